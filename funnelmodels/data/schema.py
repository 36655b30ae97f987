"""The canonical tables of the data contract (DESIGN.md) and their column names.

Every other module refers to columns through the constants here, so a column is
named once. ``kind`` says how a column is parsed: ``id`` (integer or text,
kept as read), ``datetime``, ``float``, ``int``, ``str`` or ``bool`` (true/false, yes/no, 1/0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ACTIVITIES",
    "ACTIVITY_TYPES",
    "CUSTOMERS",
    "OWNERS",
    "SCHEMAS",
    "STAGE_EVENTS",
    "SURVEYS",
    "TRANSACTIONS",
    "ColumnSpec",
    "TableSchema",
]

ColumnKind = Literal["id", "datetime", "float", "int", "str", "bool"]

# Column names, defined once.
CUSTOMER_ID = "customer_id"
CREATED_AT = "created_at"
AGE = "age"
GENDER = "gender"
INCOME = "income"
REGION = "region"
PRODUCT_KNOWLEDGE = "product_knowledge"
ORDER_ID = "order_id"
ORDERED_AT = "ordered_at"
AMOUNT = "amount"
CATEGORY = "category"
PROMISED_AT = "promised_at"
DELIVERED_AT = "delivered_at"
OPPORTUNITY_ID = "opportunity_id"
STAGE = "stage"
ENTERED_AT = "entered_at"
SOURCE = "source"
RESPONDED_AT = "responded_at"
CSAT = "csat"
NPS = "nps"
OWNER = "owner"
"""The sales person who works an opportunity (stage_events) or a row of the owners table."""
TEAM = "team"
MANAGER = "manager"
STARTED_AT = "started_at"
"""When a sales person started (owners): deals before it are not theirs to judge."""
ACTIVITY_ID = "activity_id"
AT = "at"
"""When an activity happened."""
TYPE = "type"
"""An activity's kind, mapped to :data:`ACTIVITY_TYPES` from the export's own words."""
DURATION_MINUTES = "duration_minutes"
OUTCOME = "outcome"
RANDOMISED = "randomised"
"""Activities: true when the activity was assigned at random (an experiment), so its effect is a plain difference."""
ROW = "_row"
"""Helper column: the 1-based data row of the input file, shown in error examples."""
FILE = "_file"
"""Helper column: the input file of a row, when a table comes from several files."""
AS_OF = "as_of"
"""The moment a row's features are taken at: only data strictly before it is used."""
DAYS_IN_STAGE_SO_FAR = "days_in_stage_so_far"
"""Days an open opportunity has already spent in its stage at ``as_of`` (0 on entering it)."""

MISSING_LABEL = "(missing)"
"""How an empty value of a segment or a category is shown: never confused with a value 'unknown' in the data."""

# Stage-transition rows (funnel.build_transitions): one row per stage entry of an opportunity.
ENTRY = "entry"
"""1 for an opportunity's first entry into a stage, 2 for its re-entry, …"""
EXITED_AT = "exited_at"
NEXT_STAGE = "next_stage"
CONVERTED = "converted"
"""The target: the stage moved on to the next one within the horizon."""
CONVERTED_AT = "converted_at"
LOST_AT = "lost_at"
CENSORED = "censored"
"""The outcome is not known yet: the horizon had not passed by the data's end."""
DAYS_IN_STAGE = "days_in_stage"
DAYS_TO_CONVERT = "days_to_convert"
OPPORTUNITY_START = "opportunity_start"
TRANSITION_COLUMNS = (
    OPPORTUNITY_ID,
    CUSTOMER_ID,
    STAGE,
    ENTRY,
    ENTERED_AT,
    EXITED_AT,
    NEXT_STAGE,
    CONVERTED,
    CONVERTED_AT,
    LOST_AT,
    CENSORED,
    DAYS_IN_STAGE,
    DAYS_TO_CONVERT,
    OPPORTUNITY_START,
)

# Feature columns (features.build_features), by where they come from.
DEMOGRAPHIC = (AGE, GENDER, INCOME, REGION, PRODUCT_KNOWLEDGE, "tenure_days")
PURCHASES = (
    "recency_days",
    "frequency",
    "monetary_total",
    "monetary_mean",
    "monetary_max",
    "distinct_categories",
    "spend_90d",
    "spend_365d",
    "refund_count",
    "refund_amount",
)
SATISFACTION = ("last_csat", "mean_csat", "last_nps", "survey_count")
OPPORTUNITIES = ("prior_opportunities", "prior_wins", "prior_losses")
ORDER_CONTEXT = ("order_amount", "order_category", "days_since_order", "days_late", "delivered")
"""Features of the order a survey is about (surveys.order_id): as known when the survey was answered."""
ORDER_PREFIX = "order_"
"""Prefix of a transactions column copied as a feature of the order a survey is about."""
STAGE_CONTEXT = (
    STAGE,
    "days_since_opportunity_start",
    DAYS_IN_STAGE_SO_FAR,
    "stage_entry",
    "deal_amount",
    SOURCE,
)
CATEGORICAL_FEATURES = (GENDER, REGION, STAGE, SOURCE, "order_category")

ACTIVITY_TYPES = ("call", "email", "meeting", "demo", "proposal_sent", "other")
"""The documented set of activity types; an export's own words are mapped to it (``data.activities``)."""
ACTIVITY_COUNTS = tuple(f"{t}_count" for t in ACTIVITY_TYPES)
"""Activities of each type on the opportunity before ``as_of``."""
ACTIVITY_IN_STAGE = tuple(f"{t}_in_stage" for t in ACTIVITY_TYPES)
"""Activities of each type in the current stage before ``as_of``."""
ACTIVITY_FEATURES = (
    *ACTIVITY_COUNTS,
    *ACTIVITY_IN_STAGE,
    "touches_14d",
    "touches_30d",
    "days_since_last_touch",
    "first_response_days",
    "touches_per_week_in_stage",
)
"""Point-in-time activity features of an opportunity (features.build_transition_features)."""

NAME_COLUMNS = ("name", "customer_name", "company", "account_name")
"""Customers columns that name a customer for a person: shown beside the id in the lists a
seller works (at-risk customers, the scored pipeline), never a model feature."""
OWNER_COLUMNS = (OWNER, TEAM, "sales_agent")
"""Stage-event columns that say who works a deal: shown in those lists when the export has them, never a
model feature (a model that saw the owner could not judge the owner)."""

# Output columns of the scores (models.predict).
P_NEXT_STAGE = "p_next_stage"
WIN_PROBABILITY = "win_probability"
EXPECTED_VALUE = "expected_value"
REASONS_UP = "reasons_up"
REASONS_DOWN = "reasons_down"
P_LOW = "p_low"
"""P(a score in the satisfaction scale's bottom levels)."""
EXPECTED_SCORE = "expected_score"
IN_RANGE = "in_range"
"""The customer's last order is as recent as the surveys the model learnt from."""

COMPUTED = frozenset(
    {
        *TRANSITION_COLUMNS,
        AS_OF,
        *DEMOGRAPHIC,
        *PURCHASES,
        *SATISFACTION,
        *OPPORTUNITIES,
        *ORDER_CONTEXT,
        *STAGE_CONTEXT,
        *ACTIVITY_FEATURES,
        P_NEXT_STAGE,
        WIN_PROBABILITY,
        EXPECTED_VALUE,
        REASONS_UP,
        REASONS_DOWN,
        P_LOW,
        EXPECTED_SCORE,
        IN_RANGE,
        "probability",
        "target",
        "period",
    }
)
"""Names funnelmodels computes (labels, features, scores): a table's own column of such a name is renamed."""

IN_FILE = "_in_file"
"""Suffix of a file's own column kept beside a canonical or computed column of the same name."""

DATE_COLUMNS = {
    "customers": CREATED_AT,
    "transactions": ORDERED_AT,
    "stage_events": ENTERED_AT,
    "surveys": RESPONDED_AT,
    "owners": STARTED_AT,
    "activities": AT,
}
"""Each table's own moment: when the row happened."""

MAX_AMOUNT = 1e12
"""The largest amount, deal value or income a table may hold: larger is a unit or export error."""


@dataclass(frozen=True)
class ColumnSpec:
    """One canonical column: its name, how to parse it, and whether it must exist."""

    name: str
    kind: ColumnKind
    required: bool = True
    nullable: bool = False


@dataclass(frozen=True)
class TableSchema:
    """One canonical table: its columns and the columns that identify a row."""

    name: str
    columns: tuple[ColumnSpec, ...]
    key: tuple[str, ...]

    @property
    def required(self) -> tuple[str, ...]:
        """Names of the columns every file of this table must have."""
        return tuple(c.name for c in self.columns if c.required)

    @property
    def names(self) -> tuple[str, ...]:
        """Names of all canonical columns, required and optional."""
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> ColumnSpec:
        """The spec of column ``name``."""
        return next(c for c in self.columns if c.name == name)


CUSTOMERS = TableSchema(
    name="customers",
    columns=(
        ColumnSpec(CUSTOMER_ID, "id"),
        ColumnSpec(CREATED_AT, "datetime"),
        ColumnSpec(AGE, "float", required=False, nullable=True),
        ColumnSpec(GENDER, "str", required=False, nullable=True),
        ColumnSpec(INCOME, "float", required=False, nullable=True),
        ColumnSpec(REGION, "str", required=False, nullable=True),
        ColumnSpec(PRODUCT_KNOWLEDGE, "float", required=False, nullable=True),
    ),
    key=(CUSTOMER_ID,),
)

TRANSACTIONS = TableSchema(
    name="transactions",
    columns=(
        ColumnSpec(ORDER_ID, "id"),
        ColumnSpec(CUSTOMER_ID, "id"),
        ColumnSpec(ORDERED_AT, "datetime"),
        ColumnSpec(AMOUNT, "float"),
        ColumnSpec(CATEGORY, "str", required=False, nullable=True),
        ColumnSpec(PROMISED_AT, "datetime", required=False, nullable=True),
        ColumnSpec(DELIVERED_AT, "datetime", required=False, nullable=True),
    ),
    key=(ORDER_ID,),
)

STAGE_EVENTS = TableSchema(
    name="stage_events",
    columns=(
        ColumnSpec(OPPORTUNITY_ID, "id"),
        ColumnSpec(CUSTOMER_ID, "id"),
        ColumnSpec(STAGE, "str"),
        ColumnSpec(ENTERED_AT, "datetime"),
        ColumnSpec(AMOUNT, "float", required=False, nullable=True),
        ColumnSpec(SOURCE, "str", required=False, nullable=True),
        ColumnSpec(OWNER, "str", required=False, nullable=True),
        ColumnSpec(TEAM, "str", required=False, nullable=True),
    ),
    key=(OPPORTUNITY_ID, STAGE, ENTERED_AT),
)

SURVEYS = TableSchema(
    name="surveys",
    columns=(
        ColumnSpec(CUSTOMER_ID, "id"),
        ColumnSpec(RESPONDED_AT, "datetime", required=False),
        ColumnSpec(CSAT, "int", required=False, nullable=True),
        ColumnSpec(NPS, "int", required=False, nullable=True),
        ColumnSpec(ORDER_ID, "id", required=False, nullable=True),
    ),
    key=(CUSTOMER_ID, RESPONDED_AT),
)

OWNERS = TableSchema(
    name="owners",
    columns=(
        ColumnSpec(OWNER, "str"),
        ColumnSpec(TEAM, "str", required=False, nullable=True),
        ColumnSpec(MANAGER, "str", required=False, nullable=True),
        ColumnSpec(REGION, "str", required=False, nullable=True),
        ColumnSpec(STARTED_AT, "datetime", required=False, nullable=True),
    ),
    key=(OWNER,),
)

ACTIVITIES = TableSchema(
    name="activities",
    columns=(
        ColumnSpec(ACTIVITY_ID, "id"),
        ColumnSpec(OPPORTUNITY_ID, "id"),
        ColumnSpec(CUSTOMER_ID, "id", required=False),
        ColumnSpec(AT, "datetime"),
        ColumnSpec(TYPE, "str"),
        ColumnSpec(DURATION_MINUTES, "float", required=False, nullable=True),
        ColumnSpec(OUTCOME, "str", required=False, nullable=True),
        ColumnSpec(OWNER, "str", required=False, nullable=True),
        ColumnSpec(RANDOMISED, "bool", required=False, nullable=True),
    ),
    key=(ACTIVITY_ID,),
)

SCHEMAS: dict[str, TableSchema] = {
    s.name: s for s in (CUSTOMERS, TRANSACTIONS, STAGE_EVENTS, SURVEYS, OWNERS, ACTIVITIES)
}
