"""Canaries and non-private baselines on datasets; the ledger's `nonprivate` kind.

Widening `kind` makes SQLite rebuild the ledger table, which drops its append-only trigger, so
the trigger of 0002 is installed again afterwards (PostgreSQL alters the column in place and
keeps its trigger; re-creating it there is harmless).
"""
from importlib import import_module

from django.db import migrations, models

append_only = import_module("privacy.migrations.0002_ledger_append_only")


def triggers_reinstall(apps, schema_editor):
    append_only.backward(apps, schema_editor)
    append_only.forward(apps, schema_editor)


class Migration(migrations.Migration):

    dependencies = [
        ('privacy', '0002_ledger_append_only'),
    ]

    operations = [
        migrations.AddField(
            model_name='privatedataset',
            name='allow_nonprivate_baselines',
            field=models.BooleanField(default=False, help_text='Whether non-private baselines (plain fine-tuning on the raw records, no DP guarantee) may run.'),
        ),
        migrations.AddField(
            model_name='privatedataset',
            name='canary_count',
            field=models.PositiveIntegerField(default=0, help_text='Random canary records planted in the training split at registration (0: none).'),
        ),
        migrations.AddField(
            model_name='privatedataset',
            name='canary_repeats',
            field=models.PositiveIntegerField(default=0, help_text='Copies of each canary in the training split.'),
        ),
        migrations.AlterField(
            model_name='ledgerentry',
            name='kind',
            field=models.CharField(choices=[('reserve', 'Reserve'), ('commit', 'Commit'), ('release', 'Release'), ('nonprivate', 'Non-private release')], max_length=16),
        ),
        migrations.RunPython(triggers_reinstall, migrations.RunPython.noop),
    ]
