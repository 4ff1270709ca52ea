"""Jobs are about a subject (a renewal, a card, a batch), keep why they were queued and what the
outside world answered

Every existing job is about its renewal: ``renewal_id`` becomes ``subject_kind = 'renewal'`` and
``subject_id``, without the foreign key (a subject need not be a renewal; `topup audit` checks
that renewal subjects exist). One job of a kind per subject, as before one per renewal; the
unique constraint now leads with the subject, so it also finds a subject's jobs. The index the
worker's claim uses (status, next_attempt_at) is kept. A refund job already queued gets the
reason its timeline will give: the staff's reason kept on its activation job, or that the
activation failed.

Revision ID: 0010
Revises: 0007
Create Date: 2026-12-03 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_UNIQUE = "uq_jobs_kind_renewal_id"
OLD_FOREIGN_KEY = "fk_jobs_renewal_id_renewals"
NEW_UNIQUE = "uq_jobs_subject_kind_subject_id_kind"

# The reason of each queued refund job, from the activation job of the same renewal (the staff
# refund marked the activation job it stopped with "refund: " and the staff's reason).
_REFUND_REASONS = """
UPDATE jobs SET reason = (
    SELECT CASE
        WHEN activation.last_error LIKE 'refund: %'
        THEN 'refunded at staff request before activation: '
             || substr(activation.last_error, 9)
        WHEN activation.last_error IS NOT NULL
        THEN 'activation failed permanently (' || activation.last_error
             || '); payment refunded in full'
    END
    FROM jobs AS activation
    WHERE activation.kind = 'activate' AND activation.subject_kind = 'renewal'
      AND activation.subject_id = jobs.subject_id
)
WHERE kind = 'refund' AND status = 'queued'
"""


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("subject_kind", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("subject_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("outcome", sa.String(length=16), nullable=True))
    op.execute("UPDATE jobs SET subject_kind = 'renewal', subject_id = renewal_id")
    op.execute(_REFUND_REASONS)
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.alter_column("subject_kind", existing_type=sa.String(length=16), nullable=False)
        batch_op.alter_column("subject_id", existing_type=sa.String(length=64), nullable=False)
        batch_op.drop_constraint(OLD_UNIQUE, type_="unique")
        batch_op.drop_constraint(OLD_FOREIGN_KEY, type_="foreignkey")
        batch_op.drop_column("renewal_id")
        batch_op.create_unique_constraint(NEW_UNIQUE, ["subject_kind", "subject_id", "kind"])


def downgrade() -> None:
    op.execute("DELETE FROM jobs WHERE subject_kind <> 'renewal'")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("renewal_id", sa.String(length=36), nullable=True))
    op.execute("UPDATE jobs SET renewal_id = subject_id")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.alter_column("renewal_id", existing_type=sa.String(length=36), nullable=False)
        batch_op.drop_constraint(NEW_UNIQUE, type_="unique")
        batch_op.drop_column("outcome")
        batch_op.drop_column("reason")
        batch_op.drop_column("subject_id")
        batch_op.drop_column("subject_kind")
        batch_op.create_foreign_key(OLD_FOREIGN_KEY, "renewals", ["renewal_id"], ["id"])
        batch_op.create_unique_constraint(OLD_UNIQUE, ["kind", "renewal_id"])
