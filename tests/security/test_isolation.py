"""The isolation matrix (issue 6, item 6): every route that takes an id, from the app's own
route table, answers a non-member, a viewer (where writing needs a role) and a signed-out
client exactly as it answers for an id that does not exist, and changes nothing.

For each route, actor, id slot and id the actor must not reach, two requests are sent
that differ only in that one id: the real one and an unknown id of the same shape. The
answers must be equal (status, body, every header but Date and Content-Length, with the
request's own id blanked where it is echoed back), and a dump of every table and every
stored file must be the same after a route's requests as before them.
"""

from __future__ import annotations

import random
from collections import Counter

from activityfeed.config import Settings
from activityfeed.web import auth_policy, create_app
from activityfeed.web.auth_policy import Auth, route_policies
from tests.factories import Browser, make_user
from tests.security.recipes import PUBLIC, RECIPES, path_params, route_key
from tests.security.world import build_world, comparable, diff, dump, send, unknown_like

#: What each actor may be answered (anything else means the request never reached the
#: id, so the cell would prove nothing): ignored ids (200), a form's redirect (303),
#: not found (404); a viewer's role refusal (403); a signed-out 401 or sign-in redirect.
EXPECTED = {
    "non-member": {200, 303, 404},
    "viewer": {403, 404},
    "logged-out": {303, 401},
}


def _app(tmp_path):
    return create_app(
        Settings(database_url=f"sqlite:///{tmp_path / 'unused.db'}", data_dir=tmp_path)
    )


def uncovered(app) -> list[str]:
    """What the recipes miss of the app's route table (and entries for routes gone)."""
    found, seen = [], set()
    for entry in route_policies(app):
        for key in route_key(entry.methods, entry.path):
            seen.add(key)
            recipe = RECIPES.get(key)
            if recipe is None:
                found.append(f"{key[0]} {key[1]}: no entry in tests/security/recipes.py")
                continue
            if (recipe is PUBLIC) != (entry.auth is Auth.PUBLIC):
                found.append(f"{key}: PUBLIC in the recipes if and only if declared public")
            params = path_params(entry.path)
            if recipe is not PUBLIC and not params <= set(recipe.slots):
                found.append(f"{key}: path parameters {sorted(params - set(recipe.slots))}")
            if not recipe.slots and not recipe.reason:
                found.append(f"{key}: no id slot and no reason")
    found += [f"{key}: an entry for a route that is gone" for key in sorted(set(RECIPES) - seen)]
    return found


def test_every_route_has_a_recipe(tmp_path):
    """The matrix is generated from the route table: a route without an entry, a path
    parameter the entry does not fill, or an entry for a route that is gone all fail."""
    assert uncovered(_app(tmp_path)) == []


def test_a_new_route_cannot_escape_the_matrix(tmp_path):
    app = _app(tmp_path)
    extra = auth_policy.router()

    @extra.post("/api/widgets/{widget_id}/poke")
    def poke(widget_id: str) -> None: ...

    app.include_router(extra)
    assert uncovered(app) == [
        "POST /api/widgets/{widget_id}/poke: no entry in tests/security/recipes.py"
    ]


def test_isolation_matrix(app, db, clock, settings, capsys):
    """Foreign, other-role and signed-out requests look exactly like unknown ids and
    change nothing, on every route that takes an id."""
    world = build_world(app, db, clock)
    rng = random.Random(6)
    failures: list[str] = []
    statuses: Counter[tuple[str, int]] = Counter()
    cells: Counter[str] = Counter()
    routes: set[tuple[str, str]] = set()
    keys = [k for e in route_policies(app) for k in route_key(e.methods, e.path)]
    before = dump(db, settings.data_dir)
    for actor in world.actors:
        for key in keys:
            recipe = RECIPES[key]
            if not recipe.slots or (actor.writes_only and not recipe.writes):
                continue
            baseline = {name: actor.baseline[kind] for name, kind in recipe.slots.items()}
            for slot, kind in recipe.slots.items():
                for value in actor.theirs.get(kind, []):
                    unknown = unknown_like(value, rng)
                    real = send(actor, recipe.build({**baseline, slot: value}))
                    fake = send(actor, recipe.build({**baseline, slot: unknown}))
                    where = f"{actor.name}: {key[0]} {key[1]} [{slot}={value} vs {unknown}]"
                    cells[actor.name] += 1
                    routes.add(key)
                    statuses[actor.name, real.status_code] += 1
                    blank = {value: "<ID>", unknown: "<ID>"}
                    if comparable(real, blank) != comparable(fake, blank):
                        failures.append(
                            f"{where}: differs\n  real {real.status_code} {real.text[:300]}"
                            f"\n  unknown {fake.status_code} {fake.text[:300]}"
                        )
                    if real.status_code not in EXPECTED[actor.name]:
                        failures.append(f"{where}: unexpected {real.status_code} {real.text[:200]}")
            # One dump per route and actor (its cells together): a change is a failure
            # whichever cell made it, and the route is named.
            after = dump(db, settings.data_dir)
            if after != before:
                failures.append(
                    f"{actor.name}: {key[0]} {key[1]} changed the database\n{diff(before, after)}"
                )
                before = after
    with capsys.disabled():
        print(
            f"\nisolation matrix: {len(routes)} routes, {sum(cells.values())} cells "
            f"({dict(cells)}), answers {dict(sorted(statuses.items()))}"
        )
    assert not failures, f"{len(failures)} leaks:\n" + "\n".join(failures)
    # Each actor really went through the matrix (a recipe table emptied by mistake
    # would otherwise pass).
    assert all(cells[name] >= 10 for name in EXPECTED), cells


def test_viewer_refusals_do_not_depend_on_the_id(app, db, clock):
    """The fixes behind the matrix, spelled out: a viewer is refused by role before any
    lookup (upload, clone), and a key one may not revoke looks like an unknown key."""
    world = build_world(app, db, clock)
    viewer = world.viewer
    dataset = world.team["dataset"][0]
    for rid in (dataset, "d_" + "0" * 26):
        upload = viewer.post(
            f"/api/datasets/{rid}/uploads", files={"file": ("a.png", b"x", "image/png")}
        )
        assert (upload.status_code, upload.json()["error"]["code"]) == (403, "insufficient_role")
        clone = viewer.post(f"/api/datasets/{rid}/clone", json={"workspace": world.team_slug})
        assert (clone.status_code, clone.json()["error"]["code"]) == (403, "insufficient_role")
    for key_id in (world.team["key"][0], "k_" + "0" * 26):
        revoke = viewer.delete(f"/api/api-keys/{key_id}")
        assert (revoke.status_code, revoke.json()["error"]["code"]) == (404, "not_found")


def test_the_dump_sees_every_change(app, db, clock, settings):
    """The matrix's "nothing changed" is only as good as its dump: a sign-in (a session
    row) and a stored file both show."""
    user = make_user(db, clock)
    before = dump(db, settings.data_dir)
    Browser(app, user.email)
    after = dump(db, settings.data_dir)
    assert "sessions" in diff(before, after)
    (settings.data_dir / "uploads").mkdir(exist_ok=True)
    (settings.data_dir / "uploads" / "stray").write_bytes(b"x")
    assert "<files>" in diff(after, dump(db, settings.data_dir))
