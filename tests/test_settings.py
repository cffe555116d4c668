import base64

import pytest
from pydantic import ValidationError

from chorus_litellm.settlement.signing import Signer, SigningError, generate
from chorus_litellm.core.errors import ConfigError
from chorus_litellm.settings import Settings, load_settings


def test_defaults_live_in_the_xdg_data_dir(tmp_path):
    settings = load_settings({"XDG_DATA_HOME": str(tmp_path)})
    home = tmp_path / "chorus-litellm"
    assert settings.store == "sqlite" and settings.db_path == home / "chorus.sqlite3"
    assert settings.outbox_path == home / "chorus.outbox.sqlite3" and home.is_dir()
    assert settings.outbox_flush_interval_s == 5.0 and settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.signing_key is None and settings.torch_threads is None and settings.previous_keys == []


def test_without_xdg_the_data_dir_is_under_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for xdg in ({}, {"XDG_DATA_HOME": "relative/ignored"}):
        settings = load_settings(xdg, create_dirs=False)
        assert settings.db_path == tmp_path / ".local" / "share" / "chorus-litellm" / "chorus.sqlite3"


def test_a_relative_db_path_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings({"CHORUS_DB_PATH": "data/../data/x.sqlite3"})
    assert settings.db_path == tmp_path / "data" / "x.sqlite3" and (tmp_path / "data").is_dir()
    assert settings.outbox_path == tmp_path / "data" / "x.outbox.sqlite3"  # beside the db
    monkeypatch.chdir("/")
    assert settings.db_path == tmp_path / "data" / "x.sqlite3"  # a later chdir changes nothing


def test_the_redis_outbox_defaults_to_the_data_dir(tmp_path):
    settings = load_settings({"CHORUS_STORE": "redis", "CHORUS_REDIS_URL": "redis://r:6379/1",
                              "XDG_DATA_HOME": str(tmp_path)})
    assert settings.redis_url == "redis://r:6379/1"
    assert settings.outbox_path == tmp_path / "chorus-litellm" / "chorus-redis.outbox.sqlite3"
    explicit = load_settings({"CHORUS_STORE": "redis", "CHORUS_OUTBOX_PATH": str(tmp_path / "o.sqlite3")})
    assert explicit.outbox_path == tmp_path / "o.sqlite3"


@pytest.mark.parametrize(("name", "value", "message"), [
    ("CHORUS_STORE", "mongo", "CHORUS_STORE: Input should be 'sqlite' or 'redis'"),
    ("CHORUS_OUTBOX_FLUSH_INTERVAL_S", "0", "CHORUS_OUTBOX_FLUSH_INTERVAL_S: Input should be greater than 0"),
    ("CHORUS_TORCH_THREADS", "0", "CHORUS_TORCH_THREADS: Input should be greater than or equal to 1"),
    ("CHORUS_TORCH_THREADS", "many", "CHORUS_TORCH_THREADS: Input should be a valid integer"),
])
def test_a_bad_value_names_its_variable(name, value, message):
    with pytest.raises(ConfigError) as info:
        load_settings({name: value}, create_dirs=False)
    assert str(info.value).startswith(message)


def test_os_environ_is_read_by_default_and_an_explicit_mapping_replaces_it(monkeypatch, tmp_path):
    monkeypatch.setenv("CHORUS_STORE", "redis")
    monkeypatch.setenv("CHORUS_TORCH_THREADS", "")  # empty: unset
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert load_settings(create_dirs=False).store == "redis" and Settings().store == "redis"
    assert load_settings({}, create_dirs=False).store == "sqlite"
    assert load_settings({"CHORUS_SPEND_LOG": "s.jsonl", "OTHER": "x"}, create_dirs=False).spend_log == "s.jsonl"


def test_settings_are_frozen_and_parse_previous_keys():
    settings = load_settings({"CHORUS_PREVIOUS_PUBLIC_KEYS": " a.pub, ,b64== "}, create_dirs=False)
    assert settings.previous_keys == ["a.pub", "b64=="]
    with pytest.raises(ValidationError):
        settings.store = "redis"


def test_the_signing_key_stays_secret(tmp_path):
    key = generate()
    settings = load_settings({"CHORUS_SIGNING_KEY": key["private_key"],
                              "CHORUS_SIGNING_KEY_FILE": "k.json"}, create_dirs=False)
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert key["private_key"] not in text
    assert Signer.from_settings(settings).key_id == key["key_id"]  # the key wins over the file
    assert settings.signing_key_file.is_absolute()
    assert Signer.from_settings(load_settings({}, create_dirs=False)) is None


def test_signer_from_env_keeps_its_errors(tmp_path):
    with pytest.raises(SigningError, match="32 bytes"):
        Signer.from_env({"CHORUS_SIGNING_KEY": base64.b64encode(b"short").decode()})
    with pytest.raises(SigningError, match=f"CHORUS_SIGNING_KEY_FILE {tmp_path / 'nope.json'}: not a chorus key file"):
        Signer.from_env({"CHORUS_SIGNING_KEY_FILE": str(tmp_path / "nope.json")})


def test_a_bad_webhook_allowlist_entry_is_named_at_startup():
    assert load_settings({"CHORUS_WEBHOOK_ALLOWLIST": "hooks.internal, 10.0.0.0/8 ::1"}, create_dirs=False)
    with pytest.raises(ConfigError, match="CHORUS_WEBHOOK_ALLOWLIST.*10.0.0.1/8"):
        load_settings({"CHORUS_WEBHOOK_ALLOWLIST": "10.0.0.1/8"}, create_dirs=False)


def test_a_bad_peer_invite_is_named_at_startup_without_its_token():
    with pytest.raises(ConfigError, match="CHORUS_PEER_INVITES.*entry 1") as err:
        load_settings({"CHORUS_PEER_INVITES": "gpu=tooshort"}, create_dirs=False)
    assert "tooshort" not in str(err.value)
    policy = load_settings({"CHORUS_PEER_ADMISSION": "allowlist", "CHORUS_PEER_KEYS": "ed25519:aa, ed25519:bb"},
                           create_dirs=False).peer_policy()
    assert policy.admission == "allowlist" and policy.keys == {"ed25519:aa", "ed25519:bb"}


@pytest.mark.parametrize("value", ["0", "-1", "61", "soon"])
def test_a_bad_peer_sync_interval_is_refused_naming_the_field(value):
    from chorus_litellm.core.errors import ConfigError

    with pytest.raises(ConfigError, match="^CHORUS_PEER_SYNC_S: Input should be"):
        load_settings({"CHORUS_PEER_SYNC_S": value}, create_dirs=False)
    assert load_settings({"CHORUS_PEER_SYNC_S": "0.5"}, create_dirs=False).peer_sync_s == 0.5


@pytest.mark.parametrize("value", ["0", "-1", "10001", "many"])
def test_a_bad_event_stream_cap_is_refused_naming_the_field(value):
    with pytest.raises(ConfigError, match="^CHORUS_EVENT_STREAMS_PER_KEY: Input should be"):
        load_settings({"CHORUS_EVENT_STREAMS_PER_KEY": value}, create_dirs=False)
    assert load_settings({}, create_dirs=False).event_streams_per_key == 8
    assert load_settings({"CHORUS_EVENT_STREAMS_PER_KEY": "2"}, create_dirs=False).event_streams_per_key == 2
