"""The ledger is append-only in the database itself, not only in the code that writes it.

PostgreSQL: a trigger refuses UPDATE and DELETE of ledger rows. SQLite: a trigger refuses UPDATE;
DELETE stays possible there because Django's test flush empties tables with DELETE (PostgreSQL's
flush uses TRUNCATE, which row triggers do not see), and the services never delete.
"""
from django.db import migrations

POSTGRES_FORWARD = """
CREATE OR REPLACE FUNCTION privacy_ledger_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'privacy ledger entries are append-only: % refused on entry %', TG_OP, OLD.id
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER privacy_ledger_append_only
    BEFORE UPDATE OR DELETE ON privacy_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION privacy_ledger_append_only();
"""
POSTGRES_BACKWARD = """
DROP TRIGGER IF EXISTS privacy_ledger_append_only ON privacy_ledgerentry;
DROP FUNCTION IF EXISTS privacy_ledger_append_only();
"""
SQLITE_FORWARD = """
CREATE TRIGGER privacy_ledger_no_update BEFORE UPDATE ON privacy_ledgerentry
BEGIN
    SELECT RAISE(ABORT, 'privacy ledger entries are append-only: UPDATE refused');
END;
"""
SQLITE_BACKWARD = "DROP TRIGGER IF EXISTS privacy_ledger_no_update;"


def forward(apps, schema_editor):
    sql = {"postgresql": POSTGRES_FORWARD, "sqlite": SQLITE_FORWARD}.get(schema_editor.connection.vendor)
    if sql:
        schema_editor.execute(sql, params=None)


def backward(apps, schema_editor):
    sql = {"postgresql": POSTGRES_BACKWARD, "sqlite": SQLITE_BACKWARD}.get(schema_editor.connection.vendor)
    if sql:
        schema_editor.execute(sql, params=None)


class Migration(migrations.Migration):
    dependencies = [("privacy", "0001_initial")]
    operations = [migrations.RunPython(forward, backward)]
