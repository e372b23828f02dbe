"""Trunks made through the administration (the API's): kept in the store with their password, the
configuration file's read-only, the SIP side told every change, a password masked in JSON and kept
when the mask (or nothing) comes back."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import GatewayConfig, SipConfig, TrunkConfig
from gateway.config.models import MASKED_SECRET
from gateway.control.admin import Administration
from gateway.control.store import Store
from gateway.rooms.directory import Conflict, Directory, NotFound
from gateway.sip.uri import sip_identity

FILE_TRUNK = TrunkConfig(id="telekom", registrar="tel.t-online.de", user="+4930123456", password="aus-der-Datei")  # type: ignore[arg-type]


def administration(path: Path | None = None) -> tuple[Administration, list[list[str]]]:
    config = GatewayConfig(sip=SipConfig(trunks=[FILE_TRUNK]))
    admin = Administration(config, Directory(config, identify=sip_identity), Store(path))
    told: list[list[str]] = []
    admin.trunk_listeners.append(lambda trunks: told.append([t.id for t in trunks]))
    return admin, told


def pbx(password: str | None = "PBX-Kennwort-1", **settings: object) -> TrunkConfig:
    return TrunkConfig.model_validate({"id": "pbx", "registrar": "pbx.rathaus.example", "user": "gateway", "password": password, **settings})


def test_an_added_trunk_is_kept_with_its_password_and_survives_a_restart(tmp_path: Path) -> None:
    admin, told = administration(tmp_path / "gateway.db")
    admin.save_trunk(pbx(), "admin", create=True)
    assert told == [["telekom", "pbx"]] and admin.trunk_origin("pbx") == "api"
    assert pbx().model_dump(mode="json")["password"] == MASKED_SECRET  # (what the API shows)
    again, _ = administration(tmp_path / "gateway.db")
    (kept,) = again.api_trunks.values()
    assert kept.password is not None and kept.password.get_secret_value() == "PBX-Kennwort-1"


def test_the_mask_keeps_the_password_and_an_empty_one_removes_it() -> None:
    admin, _ = administration()
    admin.save_trunk(pbx(), "admin", create=True)
    admin.save_trunk(pbx(password=MASKED_SECRET, expires_s=300), "admin", create=False)
    kept = admin.api_trunks["pbx"]
    assert kept.expires_s == 300 and kept.password is not None and kept.password.get_secret_value() == "PBX-Kennwort-1"
    admin.save_trunk(pbx(password=""), "admin", create=False)
    assert admin.api_trunks["pbx"].password is None


def test_the_configuration_files_trunks_are_read_only_and_unknown_ones_are_not_found() -> None:
    admin, told = administration()
    with pytest.raises(Conflict):
        admin.save_trunk(FILE_TRUNK, "admin", create=False)
    with pytest.raises(Conflict):
        admin.delete_trunk("telekom", "admin")
    with pytest.raises(NotFound):
        admin.save_trunk(pbx(), "admin", create=False)
    with pytest.raises(NotFound):
        admin.delete_trunk("pbx", "admin")
    admin.save_trunk(pbx(), "admin", create=True)
    with pytest.raises(Conflict):
        admin.save_trunk(pbx(), "admin", create=True)
    admin.delete_trunk("pbx", "admin")
    assert told == [["telekom", "pbx"], ["telekom"]] and admin.trunks() == [FILE_TRUNK]
