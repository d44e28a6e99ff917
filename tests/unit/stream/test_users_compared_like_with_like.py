"""The reconciliation's distinct-users check compares like with like: a tenant-hour is compared only
when the stream's rows of it hold exactly the events the manifest sent on time for it."""

from tidemark.stream.reconcile import StreamReport, compare_users, expected_users

MANIFEST = {
    # tenant, minute, country, device, page, events (late included), on-time events
    "minute_counts": [
        ["acme", "2026-12-01T10:00", "US", "desktop", "/", 5, 4],
        ["acme", "2026-12-01T10:59", "DE", "mobile", "/a", 3, 3],
        ["acme", "2026-12-01T11:00", "DE", "mobile", "/a", 2, 2],
        ["beta", "2026-12-01T10:30", "FR", "tablet", "/", 1, 0],
    ],
    # tenant, hour, distinct users, on-time distinct users
    "distinct_users_hour": [
        ["acme", "2026-12-01T10", 6, 5],
        ["acme", "2026-12-01T11", 2, 2],
        ["beta", "2026-12-01T10", 1, 0],
    ],
}


def test_expected_users_from_the_manifest():
    assert expected_users(MANIFEST) == {
        ("acme", "2026-12-01T10"): (7, 5),
        ("acme", "2026-12-01T11"): (2, 2),
        ("beta", "2026-12-01T10"): (0, 0),
    }


def test_same_traffic_is_compared():
    read = {("acme", "2026-12-01T10"): (7, 5), ("acme", "2026-12-01T11"): (2, 2)}
    check = compare_users(expected_users(MANIFEST), read)
    assert (check.max_error, check.compared, check.not_comparable) == (0.0, 2, [])


def test_an_estimate_off_by_one_is_an_error():
    check = compare_users({("acme", "h"): (100, 50)}, {("acme", "h"): (100, 51)})
    assert (check.max_error, check.compared) == (0.02, 1)


def test_other_traffic_in_the_hour_is_not_comparable_rather_than_an_error():
    """The issue's case: an earlier run's users in the same hours made 'max relative error 0.5001'."""
    read = {("acme", "2026-12-01T10"): (7 + 900, 10), ("acme", "2026-12-01T11"): (2, 2)}
    check = compare_users(expected_users(MANIFEST), read)
    assert (check.max_error, check.compared) == (0.0, 1)
    assert check.not_comparable == [["acme", "2026-12-01T10", 7, 907]]


def test_missing_rows_are_not_comparable_either():
    check = compare_users(expected_users(MANIFEST), {})
    assert check.compared == 0 and [r[:2] for r in check.not_comparable] == [
        ["acme", "2026-12-01T10"],
        ["acme", "2026-12-01T11"],
    ]


def _report(**users) -> StreamReport:
    return StreamReport(on_time_expected=9, on_time_published=9, minute_keys_expected=3, **users)


def test_the_report_says_plainly_what_it_could_not_compare():
    line = _report(users_hours_not_comparable=[["acme", "2026-12-01T10", 7, 907]]).users_line()
    assert line.startswith("distinct users/hour not compared: 1 tenant-hours not comparable")
    assert "0.5" not in line and "--since" in line
    assert _report(users_hour_max_error=0.01, users_hours_compared=2).users_line() == (
        "distinct users/hour max relative error 0.0100 over 2 tenant-hours"
    )
    mixed = _report(users_hours_compared=1, users_hours_not_comparable=[["acme", "h", 7, 907]]).users_line()
    assert mixed.startswith("distinct users/hour max relative error 0.0000 over 1 tenant-hours; 1 tenant-hours")
