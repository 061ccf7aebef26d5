"""Stage prompts: public seeds only, deterministic, and instruction extraction from generations."""
import pytest

from synthesis.prompts import PromptError, distill_prompts, generation_prompts, instruction_extract, seed_instructions


def test_generation_prompts_use_only_public_seed_examples_and_are_deterministic():
    prompts = generation_prompts(domain="medical", count=5, few_shot=3, seed=1)
    assert prompts == generation_prompts(domain="medical", count=5, few_shot=3, seed=1)
    assert prompts != generation_prompts(domain="medical", count=5, few_shot=3, seed=2)
    seeds = seed_instructions("medical")
    for system, user in prompts:
        listed = [line.split(". ", 1)[1] for line in user["content"].splitlines() if line[:1].isdigit()]
        assert len(listed) == 3 and set(listed) <= set(seeds)
        assert system["role"] == "system" and user["role"] == "user"


def test_unknown_domains_are_refused():
    with pytest.raises(PromptError, match="unknown domain 'law'"):
        generation_prompts(domain="law", count=1, few_shot=1, seed=0)
    with pytest.raises(PromptError):
        distill_prompts(["x"], domain="law")


@pytest.mark.parametrize("generated, expected", [
    ("Here's a new message: What should I eat after a stomach bug?", "What should I eat after a stomach bug?"),
    ("Sure! Here is one:\n\n1. Can stress cause chest pain at night? 2. Another one", "Can stress cause chest pain at night?"),
    ('"Is a fever of 38.5 dangerous for an adult?"', "Is a fever of 38.5 dangerous for an adult?"),
    ("I'll create a new message:\n- How long does a sprain take to heal?", "How long does a sprain take to heal?"),
    ("Ok.", ""),
])
def test_instruction_extract_removes_wrappers(generated, expected):
    assert instruction_extract(generated) == expected


def test_a_line_that_only_introduces_is_skipped():
    generated = "Let's get creative with language, and instead of one sentence here are the messages:\nCan I run with a cold?"
    assert instruction_extract(generated) == "Can I run with a cold?"


def test_a_sampled_user_turn_is_the_instruction_whole_up_to_a_plain_format_header():
    from synthesis.prompts import user_turn_instruction, user_turn_prompts

    message = "Hello doctor, my knee is stiff in the morning.\nWhat should I do?\nBest, Sam"
    assert user_turn_instruction("  " + message + "\n") == message
    assert user_turn_instruction(message + "\n\n### Response:\nRest it.") == message
    assert user_turn_instruction("Hi doctor\n### Instruction: another one") == ""  # 2 words: not an instruction
    assert user_turn_instruction("") == ""
    prompts = user_turn_prompts(3)
    assert prompts == [[{"role": "user", "content": "", "open": True}]] * 3
