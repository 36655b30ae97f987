"""The canonical tables of the data contract (DESIGN.md) and their column names.

Every other module refers to columns through the constants here, so a column is
named once. ``kind`` says how a column is parsed: ``id`` (integer or text,
kept as read), ``datetime``, ``float``, ``int`` or ``str``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "CUSTOMERS",
    "SCHEMAS",
    "STAGE_EVENTS",
    "SURVEYS",
    "TRANSACTIONS",
    "ColumnSpec",
    "TableSchema",
]

ColumnKind = Literal["id", "datetime", "float", "int", "str"]

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
ROW = "_row"
"""Helper column: the 1-based data row of the input file, shown in error examples."""
FILE = "_file"
"""Helper column: the input file of a row, when a table comes from several files."""
AS_OF = "as_of"
"""The moment a row's features are taken at: only data strictly before it is used."""
DAYS_IN_STAGE_SO_FAR = "days_in_stage_so_far"
"""Days an open opportunity has already spent in its stage at ``as_of`` (0 on entering it)."""


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

SCHEMAS: dict[str, TableSchema] = {s.name: s for s in (CUSTOMERS, TRANSACTIONS, STAGE_EVENTS, SURVEYS)}
