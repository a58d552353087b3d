"""The daemon runs a rolling red/black: both versions serve side by side between steps, then the new one alone."""

from __future__ import annotations

from tests.conftest import app_spec
from tests.daemon.conftest import DaemonFactory

ROLLING = "strategy: {type: rolling_red_black, steps: [50, 100], pause: 3s}\n"


def test_the_daemon_rolls_a_new_version_in_steps(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory(interval="1s", apps={"checkout": app_spec(regions=("us-east-1",), desired=4)}).start()
    d.wait_for(lambda: d.serving() == ["checkout-main-v000"], "the first deploy")
    d.repo.write("apps/checkout.yaml", app_spec(image="checkout-2.0", regions=("us-east-1",), desired=4,
                                                extra=ROLLING)).commit("v2, rolling")

    def half_way() -> bool:
        groups = {g["server_group"]: g for g in d.status()["server_groups"] if g["enabled"]}
        return {n: g["capacity"]["desired"] for n, g in groups.items()} == {
            "checkout-main-v000": 2, "checkout-main-v001": 2}

    d.wait_for(half_way, "the 50% step: two instances of each version in traffic")
    d.wait_for(lambda: d.serving() == ["checkout-main-v001"], "the 100% step", timeout=30)
    groups = {g["server_group"]: g for g in d.status()["server_groups"]}
    assert groups["checkout-main-v001"]["capacity"]["desired"] == 4
    assert groups["checkout-main-v000"]["capacity"]["desired"] == 0
    assert d.stop() == 0
