// The run form: when the dataset changes, show the epsilon it has left and refuse a larger target
// before submitting; when the baseline changes, show only the stages it runs (hidden stages are
// disabled, so they are not submitted); when the preset changes, fill in its values. The data
// comes from the page's json_script blocks.
"use strict";
(() => {
  const form = document.getElementById("run-form");
  if (!form) return;
  const read = (id) => JSON.parse(document.getElementById(id).textContent);
  const balances = read("run-form-balances"), presets = read("run-form-presets"), baselines = read("run-form-baselines");
  const dataset = form.elements.dataset, preset = form.elements.preset, target = form.elements.target_epsilon;
  const hint = document.getElementById("budget-hint");

  function chosenBaseline() {
    const checked = form.querySelector("input[name=baseline]:checked");
    return checked ? checked.value : "knowledgesg";
  }

  function showBudget() {
    const balance = balances[dataset.value];
    if (!balance) { hint.textContent = ""; return; }
    hint.replaceChildren();
    const name = document.createElement("strong");
    name.textContent = balance.name;
    let text = `: ε ${balance.left} left of ${balance.limit} (spent ${balance.spent}, reserved ${balance.reserved})`;
    if (balance.approval_threshold) text += `; runs above ε ${balance.approval_threshold} wait for a compliance officer's approval`;
    hint.append(name, text + ".");
    checkTarget();
  }

  // the ledger decides on submit; this only saves a round trip for a target that cannot fit
  function checkTarget() {
    const balance = balances[dataset.value];
    const value = Number(target.value);
    const tooLarge = balance && !target.disabled && target.value !== "" && value > Number(balance.left);
    target.setCustomValidity(tooLarge ? `Only ε ${balance.left} is left on ${balance.name}; ask for ${balance.left} or less.` : "");
  }

  function showStages() {
    const stages = baselines[chosenBaseline()] || [];
    for (const fieldset of form.querySelectorAll("fieldset.stage")) {
      const used = stages.includes(fieldset.dataset.stage);
      fieldset.hidden = !used;
      fieldset.disabled = !used;
    }
    target.disabled = !stages.includes("dp_finetune");
    target.closest(".field").classList.toggle("muted", target.disabled);
    checkTarget();
  }

  function fillPreset() {
    const values = presets[preset.value];
    if (!values) return;
    for (const [stage, fields] of Object.entries(values)) {
      if (stage === "target_epsilon") continue;
      for (const [name, value] of Object.entries(fields)) {
        const input = form.elements[`${stage}__${name}`];
        if (input) input.value = value;
      }
    }
    target.value = values.target_epsilon;
    checkTarget();
  }

  for (const link of document.querySelectorAll("a.preset-link")) {
    link.addEventListener("click", (event) => {
      event.preventDefault();
      preset.value = link.dataset.preset;
      fillPreset();
    });
  }
  dataset.addEventListener("change", showBudget);
  preset.addEventListener("change", fillPreset);
  target.addEventListener("input", checkTarget);
  for (const radio of form.querySelectorAll("input[name=baseline]")) radio.addEventListener("change", showStages);
  showStages();
  showBudget();
})();
