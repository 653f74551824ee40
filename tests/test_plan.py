"""Plans, actions and the candidate header."""

import pytest

from ksearch.plan import Action, DesignSpace, Param, ParamKind, Plan, actions, header, read_plan

SPACE = DesignSpace(
    params=(
        Param("mode", ("a", "b", "c"), "a"),
        Param("block", (16, 32, 64), 32, ParamKind.KNOB),
    ),
    regimes=("small", "large"),
)


def test_root_has_every_param_in_every_regime():
    root = SPACE.root()
    assert root.table() == {
        "small": {"mode": "a", "block": 32},
        "large": {"mode": "a", "block": 32},
    }


def test_knob_moves_only_to_neighbours_and_decisions_anywhere():
    assert SPACE.param("block").moves(16) == (32,)
    assert SPACE.param("block").moves(32) == (16, 64)
    assert SPACE.param("mode").moves("b") == ("a", "c")


def test_actions_cover_global_and_per_regime_edits_without_no_ops():
    root = SPACE.root()
    got = {a.describe() for a in actions(SPACE, root)}
    assert got == {
        "mode=b",
        "mode=c",
        "mode=b @small",
        "mode=c @small",
        "mode=b @large",
        "mode=c @large",
        "block=16",
        "block=64",
        "block=16 @small",
        "block=64 @small",
        "block=16 @large",
        "block=64 @large",
    }
    assert all(a.apply(root) != root for a in actions(SPACE, root))


def test_regime_action_changes_only_its_regime():
    child = Action("block", 64, "large").apply(SPACE.root())
    assert child.get("block", "large") == 64
    assert child.get("block", "small") == 32


def test_a_move_keeps_the_plans_order_and_refuses_a_setting_the_plan_lacks():
    child = Action("block", 64, "large").apply(SPACE.root())
    assert child.items == Plan.of(child.table()).items
    with pytest.raises(KeyError):
        SPACE.root().with_value("stages", 3, ("small",))


def test_complete_fills_what_an_older_plan_lacks_and_keeps_a_complete_plan():
    old = Plan.of({"small": {"mode": "b"}, "large": {"mode": "c", "block": 64}})
    assert SPACE.complete(old).table() == {
        "small": {"mode": "b", "block": 32},
        "large": {"mode": "c", "block": 64},
    }
    root = SPACE.root()
    assert SPACE.complete(root) is root
    extra = Plan.of({r: {**row, "stages": 3} for r, row in root.table().items()})
    assert SPACE.complete(extra) == extra  # a setting it does not know is kept


def test_complete_gives_a_regime_an_older_plan_lacks_the_defaults_not_the_start():
    space = DesignSpace(
        params=SPACE.params, regimes=("small", "light", "large"), start=(("light", "block", 64),)
    )
    old = Plan.of({"small": {"mode": "b"}, "large": {"mode": "c", "block": 16}})
    assert space.complete(old).table() == {
        "small": {"mode": "b", "block": 32},
        "light": {"mode": "a", "block": 32},
        "large": {"mode": "c", "block": 16},
    }


def test_with_rows_and_with_values_change_only_what_they_name():
    root = SPACE.root()
    child = root.with_values({"mode": "c", "block": 16}, ("large",))
    assert child.table() == {
        "small": {"mode": "a", "block": 32},
        "large": {"mode": "c", "block": 16},
    }
    assert child == Plan.of(child.table()) and hash(child) == hash(Plan.of(child.table()))
    assert child.row("large") == (("block", 16), ("mode", "c"))
    with pytest.raises(KeyError):
        root.with_values({"stages": 2}, ("small",))


def test_a_compound_action_sets_every_setting_it_names_and_is_named_by_all():
    act = Action("block", 64, "small", also=(("mode", "b"),))
    child = act.apply(SPACE.root())
    assert child.table()["small"] == {"mode": "b", "block": 64}
    assert child.table()["large"] == SPACE.root().table()["large"]
    assert act.kind(SPACE.root(), "small") == "block:32->64+mode:a->b"
    assert act.describe() == "block=64,mode=b @small"
    assert act.to_dict()["also"] == [["mode", "b"]]
    assert "also" not in Action("block", 64).to_dict()  # plain actions store as before


def test_couples_must_name_parameters_of_the_space():
    with pytest.raises(KeyError, match="stages"):
        DesignSpace(SPACE.params, SPACE.regimes, couples=(("block", "stages"),))


def test_action_kind_names_the_transition():
    assert Action("block", 64).kind(SPACE.root(), "small") == "block:32->64"


def test_plans_are_equal_by_content_and_hash_alike():
    a = Action("mode", "b").apply(SPACE.root())
    b = Plan.from_json(a.to_json())
    assert a == b and a.key == b.key and hash(a) == hash(b)
    assert a.key != SPACE.root().key


def test_header_round_trips_and_other_code_has_no_plan():
    plan = Action("mode", "c", "small").apply(SPACE.root())
    assert read_plan(header(plan) + "def run():\n    pass\n") == plan
    assert read_plan("import torch\n") is None
    assert read_plan("# ksearch-plan: {not json\n") is None


def test_default_outside_domain_is_refused():
    with pytest.raises(ValueError, match="default"):
        Param("block", (16, 32), 8, ParamKind.KNOB)


def test_start_values_override_defaults_per_regime():
    space = DesignSpace(SPACE.params, SPACE.regimes, start=(("large", "block", 64),))
    assert space.root().table() == {
        "small": {"mode": "a", "block": 32},
        "large": {"mode": "a", "block": 64},
    }


@pytest.mark.parametrize(
    ("start", "match"),
    [((("huge", "block", 64),), "unknown regime"), ((("large", "block", 8),), "not in its")],
)
def test_bad_start_values_are_refused(start, match):
    with pytest.raises(ValueError, match=match):
        DesignSpace(SPACE.params, SPACE.regimes, start=start)
