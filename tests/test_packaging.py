"""The package layout: every sub-package is installed under finrl_lab."""

from __future__ import annotations

import tomllib

from helpers import REPO

MAPPED = {
    "finrl_lab": "finrl_lab",
    "envs": "finrl_lab.envs",
    "agents": "finrl_lab.agents",
    "data": "finrl_lab.data",
    "configs": "finrl_lab.configs",
}


def test_every_package_listed_in_pyproject():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = set()
    for folder, dotted in MAPPED.items():
        for init in (REPO / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO / folder)
            parts = [p for p in relative.parts]
            found.add(".".join([dotted, *parts]))
    missing = sorted(found - listed)
    assert not missing, f"add to [tool.setuptools] packages: {missing}"


def test_no_top_level_envs_agents_data_modules():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    listed = config["tool"]["setuptools"]["packages"]
    assert all(name == "finrl_lab" or name.startswith("finrl_lab.") for name in listed)


def test_bundled_dataset_and_licence_ship_with_the_package():
    from finrl_lab.data.local import bundled_path

    folder = bundled_path().parent
    assert bundled_path().exists()
    assert (folder / "LICENSE-skfolio").read_text().startswith("BSD 3-Clause")
    assert "skfolio" in (folder / "SOURCE.md").read_text()
