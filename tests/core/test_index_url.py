"""resolve_index_url: option, environment, pip's configuration files, pip's default."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from fromager_dagster.core.errors import ConfigError
from fromager_dagster.core.index import url as index_url
from fromager_dagster.core.index.url import resolve_index_url


def pip_default() -> str:
    from pip._internal.models.index import PyPI

    return str(PyPI.simple_url).rstrip("/") + "/"


class Places:
    def __init__(self, tmp_path: Path) -> None:
        self.home = tmp_path / "home"
        self.venv = tmp_path / "venv"
        self.xdg_global = tmp_path / "etc" / "xdg" / "pip" / "pip.conf"
        self.etc = tmp_path / "etc" / "pip.conf"
        self.legacy = self.home / ".pip" / "pip.conf"
        self.user = self.home / ".config" / "pip" / "pip.conf"
        self.site = self.venv / "pip.conf"
        self.env_file = tmp_path / "env-pip.conf"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Places:
    p = Places(tmp_path)
    p.home.mkdir()
    p.venv.mkdir()
    for var in (
        "FROMAGER_DAGSTER_INDEX_URL",
        "PIP_INDEX_URL",
        "PIP_CONFIG_FILE",
        "XDG_CONFIG_HOME",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(p.home))
    monkeypatch.setenv("VIRTUAL_ENV", str(p.venv))
    monkeypatch.setattr(index_url, "GLOBAL_CONFIG_FILES", (p.xdg_global, p.etc))
    return p


def test_explicit_wins(places: Places, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FROMAGER_DAGSTER_INDEX_URL", "http://env.invalid/simple/")
    monkeypatch.setenv("PIP_INDEX_URL", "http://pip-env.invalid/simple/")
    write(places.user, "[global]\nindex-url = http://conf.invalid/simple/\n")
    assert resolve_index_url("http://cli.invalid/simple") == "http://cli.invalid/simple/"


def test_own_env_beats_pip_env(places: Places, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FROMAGER_DAGSTER_INDEX_URL", " http://env.invalid/simple ")
    monkeypatch.setenv("PIP_INDEX_URL", "http://pip-env.invalid/simple/")
    assert resolve_index_url() == "http://env.invalid/simple/"
    assert resolve_index_url("") == "http://env.invalid/simple/"


def test_pip_env_beats_config(places: Places, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", "https://pip-env.invalid/root/simple")
    write(places.user, "[global]\nindex-url = http://conf.invalid/simple/\n")
    assert resolve_index_url() == "https://pip-env.invalid/root/simple/"


def test_user_config(places: Places) -> None:
    write(places.user, "[global]\nindex-url = http://user.invalid/simple\n")
    assert resolve_index_url() == "http://user.invalid/simple/"


def test_xdg_config_home_is_honoured(
    places: Places, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    write(tmp_path / "xdg" / "pip" / "pip.conf", "[global]\nindex-url = http://xdg.invalid/\n")
    assert resolve_index_url() == "http://xdg.invalid/"


def test_later_files_override_earlier(places: Places) -> None:
    write(places.xdg_global, "[global]\nindex-url = http://xdg-global.invalid/\n")
    assert resolve_index_url() == "http://xdg-global.invalid/"
    write(places.etc, "[global]\nindex-url = http://etc.invalid/\n")
    assert resolve_index_url() == "http://etc.invalid/"
    write(places.legacy, "[global]\nindex-url = http://legacy.invalid/\n")
    assert resolve_index_url() == "http://legacy.invalid/"
    write(places.user, "[global]\nindex-url = http://user.invalid/\n")
    assert resolve_index_url() == "http://user.invalid/"
    write(places.site, "[global]\nindex-url = http://site.invalid/\n")
    assert resolve_index_url() == "http://site.invalid/"


def test_pip_config_file_env_overrides_the_others(
    places: Places, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(places.site, "[global]\nindex-url = http://site.invalid/\n")
    write(places.env_file, "[global]\nindex-url = http://env-file.invalid/\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(places.env_file))
    assert resolve_index_url() == "http://env-file.invalid/"


def test_pip_config_file_devnull_disables_files(
    places: Places, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(places.user, "[global]\nindex-url = http://user.invalid/\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    assert resolve_index_url() == pip_default()


def test_install_section_beats_global(places: Places) -> None:
    write(places.user, "[install]\nindex-url = http://install.invalid/\n")
    write(places.site, "[global]\nindex_url = http://global.invalid/\n")
    assert resolve_index_url() == "http://install.invalid/"


def test_extra_index_and_find_links_are_ignored(places: Places) -> None:
    write(
        places.user,
        "[global]\nextra-index-url = http://extra.invalid/\nfind-links = /tmp/wheels\n"
        "[install]\nextra-index-url = http://extra2.invalid/\n",
    )
    assert resolve_index_url() == pip_default()


def test_default_comes_from_pip(places: Places) -> None:
    url = resolve_index_url()
    assert url == pip_default()
    assert url.endswith("/")


def test_no_pip_and_nothing_configured(places: Places, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pip._internal.models.index", None)
    with pytest.raises(ConfigError) as info:
        resolve_index_url()
    assert "--index-url" in str(info.value)
    assert "FROMAGER_DAGSTER_INDEX_URL" in str(info.value)


def test_not_http_is_a_config_error(places: Places, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", "file:///srv/simple")
    with pytest.raises(ConfigError, match="PIP_INDEX_URL"):
        resolve_index_url()


def test_broken_config_file_is_named(places: Places) -> None:
    write(places.user, "index-url = http://no-section.invalid/\n")
    with pytest.raises(ConfigError, match=str(places.user)):
        resolve_index_url()
