"""``experiments/falls_by_domain.py``: the training env's failures split by what each env drew."""

import numpy as np
import pytest

from experiments import falls_by_domain as fbd


def test_failure_rates_by_quarter_of_the_envs_by_hand():
    values = np.array([0.8, 0.1, 0.7, 0.2, 0.6, 0.3, 0.5, 0.4])  # two envs per quarter once sorted
    failures = np.array([4, 0, 2, 0, 1, 1, 0, 0])
    steps = np.full(8, 1000)
    rows = fbd.rate_by_quarter(values, failures, steps)
    assert [r["envs"] for r in rows] == [2, 2, 2, 2]
    # quarters: {0.1, 0.2} 0 failures, {0.3, 0.4} 1, {0.5, 0.6} 1, {0.7, 0.8} 6; per 10 000 of 2000 env steps
    assert [r["failures"] for r in rows] == [0, 1, 1, 6]
    assert [r["per_10k_steps"] for r in rows] == pytest.approx([0.0, 5.0, 5.0, 30.0])
    assert rows[0]["low"] == pytest.approx(0.1) and rows[-1]["high"] == pytest.approx(0.8)


def test_failure_rates_by_delay_count_the_steps_run_at_each_delay():
    delay = np.array([[0, 8], [0, 8], [3, 8], [3, 8]])  # [T=4, N=2]: env 0 was reset to delay 3 after t=1
    terminated = np.array([[0, 0], [1, 0], [0, 0], [0, 1]], bool)
    rows = fbd.delay_rates(delay, terminated)
    assert [(r["delay"], r["env_steps"], r["failures"]) for r in rows] == [(0, 2, 1), (3, 2, 0), (8, 4, 1)]
    assert [r["per_10k_steps"] for r in rows] == pytest.approx([5000.0, 0.0, 2500.0])


def test_the_domain_summary_reads_the_draws_relative_to_the_nominal_model():
    import jax

    from envs.mdp import events
    from envs.robots import registry

    robot = registry.task_robot("t1", 0.005, True)
    nominal = jax.device_get(events.nominal_domain(robot))
    batch = jax.tree.map(lambda x: np.stack([np.asarray(x)] * 2), nominal)  # two envs
    # env 1: feet at 0.3 and 0.7, trunk 2 kg heavier, its CoM 0.1 m forward, 5 cm down, every armature halved
    batch.geom_friction[1, robot.foot_geoms[0], 0] = 0.3
    batch.geom_friction[1, robot.foot_geoms[1], 0] = 0.7
    batch.body_mass[1, robot.root_body] += 2.0
    batch.body_ipos[1, robot.root_body] += np.array([0.1, -0.02, -0.05])
    batch.dof_armature[1] *= 0.5
    summary = fbd.domain_summary(robot, nominal, batch)
    assert summary["foot friction (lower foot)"] == pytest.approx([nominal.geom_friction[robot.foot_geoms[0, 0], 0],
                                                                   0.3])
    assert summary["root body mass added (kg)"] == pytest.approx([0.0, 2.0])
    assert summary["root body CoM x offset (m)"] == pytest.approx([0.0, 0.1])
    assert summary["root body CoM |y| offset (m)"] == pytest.approx([0.0, 0.02])
    assert summary["root body CoM z offset (m)"] == pytest.approx([0.0, -0.05])
    assert summary["armature scale, leg mean"] == pytest.approx([1.0, 0.5])
    assert summary["armature scale, lowest ankle"] == pytest.approx([1.0, 0.5])
    assert summary["kd scale, leg mean"] == pytest.approx([1.0, 1.0])


def test_an_env_without_randomisation_is_refused_in_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        fbd.main(["config=t1_velocity", "env.domain_randomization=false", "--policy", "policies/t1_velocity"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "env.domain_randomization=false draws nothing" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow  # compiles the T1 env; CI's slow step runs it
def test_the_split_accounts_for_every_failure_and_step_of_the_rollout(capsys):
    """On the shipped T1 policy: the delay table covers every env step once and every failure once, and the
    overall count is the one ``baseline.py`` prints for the same rollout (same seed). A 5-degree tilt limit makes
    the policy's episodes end often enough to count."""
    from experiments import baseline

    args = ["config=t1_velocity", "num_envs=8", "env.tilt_limit_deg=5", "--policy", "policies/t1_velocity/policy.onnx"]
    tables = fbd.main(args + ["--steps", "200"])
    (res,) = baseline.main(args + ["--steps", "200", "--std", "0"])
    delays = tables["actuator delay (physics steps)"]
    assert sum(r["env_steps"] for r in delays) == 8 * 200 and res["episodes_failed"] > 8
    assert sum(r["failures"] for r in delays) == res["episodes_failed"]
    for rows in (v for k, v in tables.items() if k != "actuator delay (physics steps)"):
        assert sum(r["envs"] for r in rows) == 8 and sum(r["failures"] for r in rows) == res["episodes_failed"]
    assert f"{res['episodes_failed']} failures in 1600 env steps" in capsys.readouterr().out
