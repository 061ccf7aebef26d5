"""The three role groups with their model permissions, and the audit trail made append-only
in the database like the ledger (UPDATE refused on both databases, DELETE on PostgreSQL)."""
from django.contrib.auth.management import create_permissions
from django.db import migrations

from privacy.access import role_groups_ensure

POSTGRES_FORWARD = """
CREATE OR REPLACE FUNCTION privacy_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit entries are append-only: % refused on entry %', TG_OP, OLD.id
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER privacy_audit_append_only
    BEFORE UPDATE OR DELETE ON privacy_auditentry
    FOR EACH ROW EXECUTE FUNCTION privacy_audit_append_only();
"""
POSTGRES_BACKWARD = """
DROP TRIGGER IF EXISTS privacy_audit_append_only ON privacy_auditentry;
DROP FUNCTION IF EXISTS privacy_audit_append_only();
"""
SQLITE_FORWARD = """
CREATE TRIGGER privacy_audit_no_update BEFORE UPDATE ON privacy_auditentry
BEGIN
    SELECT RAISE(ABORT, 'audit entries are append-only: UPDATE refused');
END;
"""
SQLITE_BACKWARD = "DROP TRIGGER IF EXISTS privacy_audit_no_update;"


def roles_create(apps, schema_editor):
    for app_config in apps.get_app_configs():  # permissions of models created in this run
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    role_groups_ensure(apps.get_model("auth", "Group"), apps.get_model("auth", "Permission"))


def triggers_forward(apps, schema_editor):
    sql = {"postgresql": POSTGRES_FORWARD, "sqlite": SQLITE_FORWARD}.get(schema_editor.connection.vendor)
    if sql:
        schema_editor.execute(sql, params=None)


def triggers_backward(apps, schema_editor):
    sql = {"postgresql": POSTGRES_BACKWARD, "sqlite": SQLITE_BACKWARD}.get(schema_editor.connection.vendor)
    if sql:
        schema_editor.execute(sql, params=None)


class Migration(migrations.Migration):
    dependencies = [("privacy", "0004_grants_audit"), ("jobs", "0004_finetune_private_kind"),
                    ("auth", "0012_alter_user_first_name_max_length"), ("contenttypes", "0002_remove_content_type_name")]
    operations = [
        migrations.RunPython(roles_create, migrations.RunPython.noop),
        migrations.RunPython(triggers_forward, triggers_backward),
    ]
