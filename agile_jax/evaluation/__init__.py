"""Evaluation of exported policies: scenario commands, sim-to-MuJoCo rollouts, metrics and reports.

* :mod:`.commands`: scenario YAML (sweeps / timed schedules) and seeded random commands as piecewise-constant
  schedules;
* :mod:`.policy_io`: reads ``policy.yaml`` and builds observations / joint targets from it alone;
* :mod:`.sim2mujoco`: runs ``policy.onnx`` (or ``policy.pt``) in CPU MuJoCo with explicit PD;
* :mod:`.metrics` and :mod:`.report`: trajectory metrics (also for MJX rollouts), npz / json / HTML output.
"""
