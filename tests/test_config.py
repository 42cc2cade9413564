from __future__ import annotations

from pathlib import Path

import pytest

from sightglass.config import Config, ConfigError, parse_duration_ms
from sightglass.timeutil import parse_step_ms, parse_time_ms


def test_durations() -> None:
    assert parse_duration_ms("1h30m") == 5_400_000
    assert parse_duration_ms("250ms") == 250
    assert parse_duration_ms("15") == 15_000
    assert parse_duration_ms("2d") == 172_800_000
    for bad in ("", "5x", "1h 3m", "m5"):
        with pytest.raises(ValueError):
            parse_duration_ms(bad)


def test_times_and_steps() -> None:
    assert parse_time_ms("1700000000.5") == 1_700_000_000_500
    assert parse_time_ms("2023-11-14T22:13:20Z") == 1_700_000_000_000
    assert parse_time_ms("now-1h", now=10_000_000) == 10_000_000 - 3_600_000
    assert parse_step_ms("15s") == 15_000 and parse_step_ms("0.5") == 500
    with pytest.raises(ValueError):
        parse_time_ms("yesterday")
    with pytest.raises(ValueError):
        parse_step_ms("0s")


def test_file_env_and_flags_layer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "s.toml"
    f.write_text(
        """
data = "/from/file"
listen = "0.0.0.0:1"
[storage]
retention = "30d"
[[scrape_configs]]
job_name = "dcgm"
scrape_interval = "10s"
static_configs = [{ targets = ["gpu-1:9400"], labels = { cluster = "a" } }]
"""
    )
    c = Config.load(f)
    assert c.data == "/from/file" and c.storage.retention == "30d"
    assert c.scrape_configs[0].static_configs[0].labels == {"cluster": "a"}
    monkeypatch.setenv("SIGHTGLASS_DATA", "/from/env")
    assert Config.load(f).data == "/from/env"
    assert Config.load(f, data="/from/flag", retention="1d").storage.retention == "1d"


def test_errors_name_the_setting(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(
        'listen = "nope"\n[storage]\nretention = "forever"\n[limits]\nmax_body_bytes = "x"\nbogus = 1\n'
    )
    with pytest.raises(ConfigError) as e:
        Config.load(f)
    msg = str(e.value)
    assert (
        "listen" in msg and "storage.retention" in msg and "limits.max_body_bytes" in msg and "bogus" in msg
    )
    f.write_text("this is = not toml [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Config.load(f)
    with pytest.raises(ConfigError, match="does not exist"):
        Config.load(tmp_path / "missing.toml")
