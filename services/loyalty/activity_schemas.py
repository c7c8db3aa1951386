"""Request and response models of engagement activities (日常互动), with the rules each type needs."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, create_model, model_validator
from pydantic.fields import FieldInfo

from laoke.contracts.loyalty import ActivityType
from laoke.kit.clock import LocalTime
from laoke.kit.patches import refuse_nulls

# Completed by what Laoke sees happen (behaviour events, profile edits, orders), never on the buyer's word.
AUTOMATIC_TYPES = frozenset(
    {
        "favorite_shop",
        "favorite_item",
        "add_to_cart",
        "profile_completion",
        "birthday_registration",
        "task_chain",
    }
)
BEHAVIOUR_TYPES = frozenset({"favorite_shop", "favorite_item", "add_to_cart"})
Status = Literal["draft", "live", "ended"]
KEY_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"


class Slot(BaseModel):
    """A daily time slot in the shop's time zone, e.g. 10:00–10:10 (抢红包 before a big sale)."""

    model_config = ConfigDict(extra="forbid")

    start: LocalTime
    end: LocalTime

    @model_validator(mode="after")
    def _ordered(self) -> Slot:
        if self.end <= self.start:
            raise ValueError(f"slot {self.start}–{self.end}: the end must come after the start")
        return self


class Question(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=KEY_PATTERN, description="Also the customer attribute the answer is stored as")
    text: str = Field(min_length=1, max_length=500)
    kind: Literal["single", "multiple", "text"] = "single"
    options: list[str] = Field(default_factory=list, max_length=50)
    attribute: str | None = Field(
        default=None, pattern=KEY_PATTERN, description="Attribute name when it differs from the id"
    )
    required: bool = True

    @model_validator(mode="after")
    def _options_fit(self) -> Question:
        if self.kind == "text" and self.options:
            raise ValueError(f"question {self.id}: a text question has no options")
        if self.kind != "text" and len(self.options) < 2:
            raise ValueError(f"question {self.id}: a choice question needs at least two options")
        if len(set(self.options)) != len(self.options):
            raise ValueError(f"question {self.id}: options must differ")
        return self


class VoteOption(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=KEY_PATTERN)
    label: str = Field(min_length=1, max_length=200)


class ChainTask(BaseModel):
    """One step of a task chain (连续多任务)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["favorite_shop", "favorite_item", "add_to_cart", "signin", "order", "activity"]
    item_id: str | None = Field(default=None, max_length=128, description="favorite_item / add_to_cart")
    activity_id: str | None = Field(default=None, max_length=32, description="`activity`: take part in it")

    @model_validator(mode="after")
    def _target(self) -> ChainTask:
        if self.type == "activity" and not self.activity_id:
            raise ValueError("an `activity` task names the activity_id to take part in")
        if self.item_id and self.type not in ("favorite_item", "add_to_cart"):
            raise ValueError(f"a {self.type} task takes no item_id")
        return self

    def key(self) -> str:
        return f"{self.type}:{self.item_id or self.activity_id or ''}"


class Eligibility(BaseModel):
    model_config = ConfigDict(extra="forbid")

    segment_id: str | None = Field(default=None, max_length=32, description="Only members of this segment")
    min_tier_level: int = Field(default=0, ge=0, le=100)


class ActivityRules(BaseModel):
    """Everything an activity does, stored as it was validated."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(default=None, max_length=2000)
    slots: list[Slot] = Field(default_factory=list, max_length=24)
    eligibility: Eligibility = Field(default_factory=Eligibility)
    per_member_limit: int | None = Field(default=1, ge=1, le=10_000, description="None: unlimited")
    per_member_daily_limit: int | None = Field(default=None, ge=1, le=1000)
    reward_points: int = Field(default=0, ge=0, le=1_000_000)
    reward_coupon_template_id: str | None = Field(default=None, max_length=32)
    cost_points: int = Field(default=0, ge=0, le=1_000_000, description="Points it costs to take part")
    budget_points: int | None = Field(default=None, ge=0, description="Most points all rewards may pay")
    stock: int | None = Field(default=None, ge=0, description="Most rewards in all")
    slot_stock: int | None = Field(default=None, ge=1, le=1_000_000, description="grab: the pool per slot")
    passphrase: str | None = Field(default=None, min_length=1, max_length=64, description="grab: 口令")
    item_id: str | None = Field(default=None, max_length=128, description="favorite_item / add_to_cart")
    questions: list[Question] = Field(default_factory=list, max_length=50)
    options: list[VoteOption] = Field(default_factory=list, max_length=50)
    price: Decimal | None = Field(default=None, gt=0, max_digits=12, decimal_places=2, description="yuan")
    tolerance: Decimal | None = Field(default=None, ge=0, max_digits=12, decimal_places=2)
    tasks: list[ChainTask] = Field(default_factory=list, max_length=20)


_ONLY_FOR: dict[str, set[str]] = {
    "slot_stock": {"grab"},
    "passphrase": {"grab"},
    "item_id": {"favorite_item", "add_to_cart"},
    "questions": {"survey"},
    "options": {"vote"},
    "price": {"guess_price"},
    "tolerance": {"guess_price"},
    "tasks": {"task_chain"},
}


class ActivityIn(ActivityRules):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "type": "survey",
                    "title": "护肤小调查",
                    "starts_at": "2026-11-01T00:00:00+08:00",
                    "ends_at": "2026-12-01T00:00:00+08:00",
                    "status": "live",
                    "reward_points": 20,
                    "budget_points": 20000,
                    "questions": [
                        {"id": "skin_type", "text": "您的肤质？", "options": ["dry", "oily", "mixed"]},
                        {
                            "id": "wishes",
                            "text": "想要的新品",
                            "kind": "multiple",
                            "options": ["面霜", "精华"],
                        },
                    ],
                },
                {
                    "type": "grab",
                    "title": "双十一抢红包",
                    "starts_at": "2026-11-10T00:00:00+08:00",
                    "ends_at": "2026-11-12T00:00:00+08:00",
                    "slots": [{"start": "10:00", "end": "10:10"}, {"start": "20:00", "end": "20:10"}],
                    "slot_stock": 100,
                    "reward_points": 88,
                    "passphrase": "老客专享",
                    "per_member_limit": None,
                },
            ]
        },
    )

    type: ActivityType
    title: str = Field(min_length=1, max_length=200)
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    status: Literal["draft", "live"] = "draft"

    @model_validator(mode="after")
    def _fits_type(self) -> ActivityIn:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must come after starts_at")
        for name, types in _ONLY_FOR.items():
            if getattr(self, name) not in (None, []) and self.type not in types:
                raise ValueError(
                    f"`{name}` belongs to {', '.join(sorted(types))} activities, not {self.type}"
                )
        needs = {
            "survey": ("questions", "a survey needs questions"),
            "vote": ("options", "a vote needs at least two options"),
            "grab": ("slot_stock", "a grab needs `slot_stock`, the pool of each slot"),
            "guess_price": ("price", "a price guess needs the real `price` and a `tolerance`"),
            "task_chain": ("tasks", "a task chain needs at least two tasks"),
        }
        if self.type in needs:
            field, message = needs[self.type]
            if not getattr(self, field) or (self.type == "guess_price" and self.tolerance is None):
                raise ValueError(message)
        if self.type == "vote" and len(self.options) < 2:
            raise ValueError("a vote needs at least two options")
        if self.type == "task_chain" and len(self.tasks) < 2:
            raise ValueError("a task chain needs at least two tasks")
        ids = [q.id for q in self.questions] + [o.id for o in self.options]
        if len(set(ids)) != len(ids):
            raise ValueError("question and option ids must differ")
        if self.type in ("vote", "referral") or self.type in AUTOMATIC_TYPES:
            # One vote per member; a task or an invitation pays once (per invitee).
            self.per_member_limit = 1 if self.type != "referral" else None
        if self.type in ("referral",) and self.cost_points:
            raise ValueError("a referral costs nothing to take part in")
        if (
            not self.reward_points
            and not self.reward_coupon_template_id
            and self.type not in ("survey", "vote")
        ):
            raise ValueError("give a reward: reward_points or reward_coupon_template_id")
        return self

    def rules(self) -> ActivityRules:
        return ActivityRules.model_validate(self.model_dump(include=set(ActivityRules.model_fields)))


# What may change once members can take part: the rest (rewards, costs, limits, questions, options, the
# price, tasks, slots, the start) is what they took part under, and changes only while a draft.
CHANGEABLE_WHEN_LIVE = frozenset(
    {"title", "description", "status", "ends_at", "budget_points", "stock", "eligibility"}
)


class _ActivityChange(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"status": "live"},
                {"eligibility": {"segment_id": "seg_7d2a48c3f9a0c1e5", "min_tier_level": 0}, "stock": 500},
                {"reward_points": 30, "starts_at": "2026-12-10T00:00:00+08:00"},
            ]
        },
    )

    title: str | None = Field(default=None, min_length=1, max_length=200)
    status: Status | None = None
    starts_at: AwareDatetime | None = Field(default=None, description="A draft only")
    ends_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _keeps_required(self) -> _ActivityChange:
        refuse_nulls(self, "title", "status", "starts_at", "ends_at")
        return self


# Every rule of ActivityRules with its own bounds but no default, so that what was not sent is told apart
# from what was (`exclude_unset`) and the schema shows no default a PATCH would not apply.
ActivityPatch = create_model(
    "ActivityPatch",
    __base__=_ActivityChange,
    __doc__="A change to an activity; a field left out keeps its value. A draft may change everything but "
    f"its type (checked as a new activity is); once live, only {', '.join(sorted(CHANGEABLE_WHEN_LIVE))}.",
    **{
        name: (info.annotation, FieldInfo.merge_field_infos(info, default=None, default_factory=None))
        for name, info in ActivityRules.model_fields.items()
    },
)


class ActivityOut(BaseModel):
    id: str
    type: ActivityType
    title: str
    status: Status
    starts_at: datetime
    ends_at: datetime
    rules: dict[str, Any] = Field(description="As created; a price guess hides its price until revealed")
    rewards_given: int
    points_awarded: int
    revealed: bool
    created_at: datetime


class ActivityList(BaseModel):
    items: list[ActivityOut]
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for the next page")


class ParticipationIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"customer_id": "cus_3f9a0c1e5b7d2a48", "answers": {"skin_type": "dry", "wishes": ["面霜"]}},
                {"customer_id": "cus_3f9a0c1e5b7d2a48", "option": "green_tea"},
                {"customer_id": "cus_3f9a0c1e5b7d2a48", "passphrase": "老客专享"},
                {"customer_id": "cus_3f9a0c1e5b7d2a48", "guess": "129.00"},
                {"customer_id": "cus_9b1d2e3f4a5b6c7d", "invite_code": "K7M2Q9XP"},
            ]
        },
    )

    customer_id: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")
    answers: dict[str, str | list[str]] | None = Field(
        default=None, description="survey: question id → answer"
    )
    option: str | None = Field(default=None, max_length=40, description="vote: the option id")
    passphrase: str | None = Field(default=None, max_length=64, description="grab: the 口令, when set")
    guess: Decimal | None = Field(default=None, gt=0, max_digits=12, decimal_places=2, description="yuan")
    invite_code: str | None = Field(default=None, max_length=16, description="referral: the inviter's code")


class ParticipationOut(BaseModel):
    id: str
    activity_id: str
    customer_id: str
    status: str = Field(description="done, rewarded, won, lost, guessed, pending, in_progress, unrewarded")
    points_cost: int
    points_awarded: int
    coupon_code: str | None = None
    slot: str | None = None
    note: str | None = None
    answer: dict[str, Any]
    points_available: int | None = Field(default=None, description="The member's balance afterwards")
    created_at: datetime


class ParticipationList(BaseModel):
    items: list[ParticipationOut]
    next_cursor: str | None = None


class InvitationIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"customer_id": "cus_3f9a0c1e5b7d2a48"}]}
    )

    customer_id: str = Field(
        min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$", description="The inviter"
    )


class InvitationOut(BaseModel):
    activity_id: str
    customer_id: str
    code: str


class ActivityStats(BaseModel):
    activity_id: str
    participants: int = Field(description="Distinct members who took part")
    participations: int
    rewards_given: int
    points_awarded: int
    points_cost_collected: int
    budget_points_left: int | None
    stock_left: int | None
    orders_within_7_days: int = Field(
        description="Orders participants placed within 7 days after taking part"
    )
    revenue_within_7_days: Decimal = Field(description="What those orders kept (paid − refunded), yuan")
    by_status: dict[str, int]
    answers: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="survey: question → option → members; text questions count answers"
    )
    votes: dict[str, int] = Field(default_factory=dict, description="vote: option → votes")
    slots: dict[str, int] = Field(default_factory=dict, description="grab: slot → winners")
