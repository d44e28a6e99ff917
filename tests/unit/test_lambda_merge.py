"""The registry snapshot's settled days (pure): which days a query may take whole, and the digest that
ties a settled-day build to the exact versions it was made from."""

from tidemark.lambda_merge import DAY_S, Snapshot, day_digest

DAY = 1_796_083_200  # a UTC midnight
HOURS = {DAY + i * 3600: 100 + i for i in range(24)}


def test_digest_only_for_a_wholly_published_day_and_changed_by_any_republish():
    digest = day_digest(HOURS, DAY)
    assert digest is not None and digest == day_digest(dict(HOURS), DAY)
    assert day_digest({h: v for h, v in HOURS.items() if h != DAY + 23 * 3600}, DAY) is None
    assert day_digest({**HOURS, DAY + 5 * 3600: 999}, DAY) != digest  # one hour republished
    assert day_digest({**HOURS, DAY + DAY_S: 7}, DAY) == digest  # the next day's hours do not count


def test_within_keeps_only_settled_days_wholly_inside_and_not_straddling_the_cut():
    days = {DAY - DAY_S: 1, DAY: 2, DAY + DAY_S: 3}
    snap = Snapshot(HOURS, (), days)
    assert snap.within(DAY - DAY_S, DAY + 2 * DAY_S).settled == days
    assert snap.within(DAY - DAY_S + 3600, DAY + 2 * DAY_S).settled == {DAY: 2, DAY + DAY_S: 3}  # first day partial
    assert snap.within(DAY - DAY_S, DAY + 2 * DAY_S - 1).settled == {DAY - DAY_S: 1, DAY: 2}  # last day partial
    assert snap.within(DAY - DAY_S, DAY + 2 * DAY_S, cut=DAY + 7200).settled == {DAY - DAY_S: 1, DAY + DAY_S: 3}
    assert snap.within(DAY - DAY_S, DAY + 2 * DAY_S, cut=DAY).settled == days  # a cut on a day boundary


def test_params_match_nothing_without_settled_days():
    params = Snapshot(HOURS).params()
    assert params["settled"] == ((0, 0),) and params["settled_days"] == (0,)
    params = Snapshot(HOURS, (), {DAY: 5}).params()
    assert params["settled"] == ((DAY, 5),) and params["settled_days"] == (DAY,)
