"""A budget's composition policy (issue 25). Existing budgets stay `sequential`: nothing they
charged changes. Existing ledger rows are not touched (the ledger is append-only): commits whose
mechanism JSON names sample_rate, noise_multiplier and steps (every commit the dp_finetune stage
wrote) are composed; any row that names none is counted sequentially on top of the composed
figure (its epsilon and its delta added), so the composed figure is never below the ledger."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('privacy', '0011_privatedataset_audit_canary_count'),
    ]

    operations = [
        migrations.AddField(
            model_name='privacybudget',
            name='composition',
            field=models.CharField(choices=[('sequential', "Sequential (the sum of the jobs' epsilons)"), ('tight', "Tight (every job's mechanism composed by the accountant)")], default='sequential', help_text='Chosen by a compliance officer through privacy.services.budget_composition_change (audited).', max_length=16),
        ),
        migrations.AlterField(
            model_name='auditentry',
            name='action',
            field=models.CharField(choices=[('dataset_registered', 'Dataset registered'), ('budget_changed', 'Budget changed'), ('grant_added', 'Access granted'), ('grant_removed', 'Access revoked'), ('run_approved', 'Run approved'), ('run_rejected', 'Run rejected'), ('approval_threshold_changed', 'Approval threshold changed'), ('model_deployed', 'Model deployed'), ('model_undeployed', 'Model deployment stopped'), ('serving_key_created', 'Serving API key created'), ('serving_key_revoked', 'Serving API key revoked'), ('composition_changed', 'Composition policy changed')], max_length=32),
        ),
        migrations.AlterField(
            model_name='ledgerentry',
            name='mechanism',
            field=models.JSONField(blank=True, default=dict, help_text='For commits: sample_rate, noise_multiplier, steps, accountant, library versions; for tight reserves: the plan.'),
        ),
    ]
