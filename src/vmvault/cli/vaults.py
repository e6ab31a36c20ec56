"""``vmvault vault``: vaults, in a directory or an S3 bucket (the hosts of each location:
:mod:`vmvault.cli.hosts`)."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

from vmvault import documents
from vmvault.cli import remote, render
from vmvault.cli.context import services
from vmvault.cli.options import JsonOpt
from vmvault.cli.plain import Listing
from vmvault.cli.render import emit_json, err, out
from vmvault.cli.vault_keys import key_app, read_paper
from vmvault.domain.errors import InvalidInput
from vmvault.domain.inputs import parse_size, quoted
from vmvault.domain.vault import SettingsChange, s3_location
from vmvault.local_user import local_principal

vault_app = typer.Typer(help="Create and inspect vaults.", no_args_is_help=True)
vault_app.add_typer(key_app, name="key")

# --- vaults --------------------------------------------------------------------------


class StorageKind(StrEnum):
    local = "local"
    s3 = "s3"


def S3_OPTIONS(*values: str | None) -> list[tuple[str, str | None]]:
    names = ("--endpoint", "--bucket", "--prefix", "--region", "--credentials-file")
    return list(zip(names, values, strict=True))


def _s3_body(s3: object | None, *values: str | None) -> dict[str, str | None] | None:
    """The API's ``s3`` of ``vault create`` and ``vault attach`` (None: a directory)."""
    if s3 is None:
        return None
    names = ("endpoint", "bucket", "prefix", "region", "credentials_file")
    return dict(zip(names, values, strict=True))


#: The S3 options ``vault create`` and ``vault attach`` share.
RegionOpt = Annotated[str | None, typer.Option(help="S3: region (default us-east-1).")]
CredentialsFileOpt = Annotated[
    str | None,
    typer.Option(
        help="S3: INI file with aws_access_key_id/aws_secret_access_key "
        "(default: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY from the environment)."
    ),
]


@vault_app.command("create")
def vault_create(
    name: str,
    location: Annotated[str, typer.Option(help="Location (region) the vault serves.")],
    path: Annotated[
        str | None, typer.Option(help="Directory (default: VMVAULT_HOME/vaults/NAME).")
    ] = None,
    encrypt: Annotated[
        bool, typer.Option("--encrypt", help="AES-256-GCM; passphrase from VMVAULT_PASSPHRASE.")
    ] = False,
    key_file: Annotated[
        str | None,
        typer.Option(help="Where the wrapped keys go (default VMVAULT_HOME/keys/NAME.key)."),
    ] = None,
    chunk_size: Annotated[
        str | None, typer.Option(help="Chunk size, a power of two: 64K … 64M (default 4M).")
    ] = None,
    compression_level: Annotated[int | None, typer.Option(help="zstd level (default 1).")] = None,
    storage: Annotated[
        StorageKind, typer.Option(help="Where the vault's objects go: a directory or S3.")
    ] = StorageKind.local,
    endpoint: Annotated[
        str | None, typer.Option(help="S3: the service's URL, e.g. http://127.0.0.1:7480.")
    ] = None,
    bucket: Annotated[str | None, typer.Option(help="S3: an existing bucket.")] = None,
    prefix: Annotated[
        str | None, typer.Option(help="S3: keys under this prefix (default: none).")
    ] = None,
    region: RegionOpt = None,
    credentials_file: CredentialsFileOpt = None,
    object_lock: Annotated[
        bool,
        typer.Option(
            "--object-lock",
            help="S3: the bucket has Object Lock (refused if not); retained points' objects "
            "get a retention (docs/immutability.md).",
        ),
    ] = False,
    lock_mode: Annotated[
        str | None,
        typer.Option(
            help="S3 Object Lock mode: governance or compliance (default: compliance once the "
            "vault is locked immutable, governance before)."
        ),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Create a vault serving the VMs of one location, in a directory or an S3 bucket."""
    s3 = None
    if storage is StorageKind.s3:
        if endpoint is None or bucket is None:
            raise InvalidInput("--storage s3 needs --endpoint and --bucket", what="vault create")
        s3 = s3_location(endpoint, bucket, prefix, region, credentials_file, object_lock, lock_mode)
    else:
        lock_opts = ("--object-lock", "x" if object_lock else None), ("--lock-mode", lock_mode)
        s3_only = [
            o
            for o, v in [
                *S3_OPTIONS(endpoint, bucket, prefix, region, credentials_file),
                *lock_opts,
            ]
            if v
        ]
        if s3_only:
            raise InvalidInput("it goes with --storage s3", what=s3_only[0])
    size = parse_size(chunk_size, "--chunk-size") if chunk_size is not None else None
    if remote.active():  # paths are the server's: absolute ones only (the API refuses others)
        body: dict[str, Any] = {
            "name": name,
            "location": location,
            "path": path,
            "encrypt": encrypt,
        }
        body |= {"key_file": key_file, "chunk_size": size, "compression_level": compression_level}
        s3_body = _s3_body(s3, endpoint, bucket, prefix, region, credentials_file)
        doc = remote.post("/vaults", body | {"s3": s3_body})
    else:
        doc = documents.vault_doc(services().vaults.create(
            name, location, path, encrypt=encrypt, key_file=key_file, chunk_size=size,
            zstd_level=compression_level, s3=s3,
        ))  # fmt: skip
    if json_:
        emit_json(doc)
    else:
        extra = f", encrypted, keys in {doc['key_file']}" if doc["encrypted"] else ""
        at = f" at {doc['s3']['endpoint']}" if doc["s3"] is not None else ""
        out.print(
            f"vault '{doc['name']}' created in {doc['path']}{at} "
            f"(location {doc['location']}{extra})",
            markup=False,
        )
        for option, given in (("--path", path), ("--key-file", key_file)):
            if given and not os.path.isabs(given):
                out.print(
                    f"  {option} {quoted(given)} was taken relative to {os.getcwd()}",
                    markup=False,
                )


@vault_app.command("attach")
def vault_attach(
    name: Annotated[str, typer.Argument(help="The vault's name in this catalog.")],
    location: Annotated[str, typer.Option(help="Location (region) the vault serves.")],
    path: Annotated[str | None, typer.Option(help="The vault's directory.")] = None,
    storage: Annotated[
        StorageKind, typer.Option(help="Where the vault is: a directory or S3.")
    ] = StorageKind.local,
    endpoint: Annotated[str | None, typer.Option(help="S3: the service's URL.")] = None,
    bucket: Annotated[str | None, typer.Option(help="S3: the vault's bucket.")] = None,
    prefix: Annotated[str | None, typer.Option(help="S3: the vault's key prefix.")] = None,
    region: RegionOpt = None,
    credentials_file: CredentialsFileOpt = None,
    paper_key: Annotated[
        Path | None,
        typer.Option(
            help="Encrypted vault: the paper key ('vault key export'), a file or '-' for "
            "stdin; a new key file is wrapped with VMVAULT_NEW_PASSPHRASE."
        ),
    ] = None,
    key_file: Annotated[
        str | None,
        typer.Option(
            help="Encrypted vault: a copy of its key file (passphrase: VMVAULT_PASSPHRASE)."
        ),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Attach an existing vault (e.g. on a new machine, after losing the catalog): read its
    manifests and rebuild the catalog's VMs and recovery points (docs/disaster-recovery.md)."""
    s3 = None
    if storage is StorageKind.s3:
        if endpoint is None or bucket is None or path is not None:
            raise InvalidInput("--storage s3 needs --endpoint and --bucket, no --path",
                               what="vault attach")  # fmt: skip
        s3 = s3_location(endpoint, bucket, prefix, region, credentials_file)
    else:
        s3_only = [
            o for o, v in S3_OPTIONS(endpoint, bucket, prefix, region, credentials_file) if v
        ]
        if s3_only:
            raise InvalidInput("it goes with --storage s3", what=s3_only[0])
        if path is None:
            raise InvalidInput("give the vault's directory (--path)", what="vault attach")
    if remote.active():  # paths are the server's: absolute ones only (the API refuses others)
        if paper_key is not None:
            remote.refuse_option("--paper-key", "a passphrase or a key never crosses the network")
        body: dict[str, Any] = {"name": name, "location": location, "path": path}
        body |= {"s3": _s3_body(s3, endpoint, bucket, prefix, region, credentials_file)}
        doc = remote.post("/vaults/attach", body | {"key_file": key_file})
    else:
        text = read_paper(paper_key, "--paper-key") if paper_key is not None else None
        report = services().vault_attach.attach(
            name, location, path, s3, paper_key=text, key_file=key_file
        )
        doc = documents.attach_doc(report)
    if json_:
        emit_json(doc)
        return
    v = doc["vault"]
    at = f" at {v['s3']['endpoint']}" if v["s3"] is not None else ""
    out.print(
        f"vault '{v['name']}' attached from {v['path']}{at} (location {v['location']}, keys from "
        f"{doc['keys_from']}): {doc['vms']} VMs ({doc['vms_new']} new), {doc['points']} "
        f"points, {doc['bytes_logical']} bytes ({doc['bytes_stored']} stored)",
        markup=False,
    )
    if doc["copies"]:
        out.print(
            f"  {doc['copies']} points already known: held by '{v['name']}' too", markup=False
        )
    for line in doc["skipped"]:
        err.print(f"warning: manifest skipped: {line}", markup=False)
    if doc["incomplete"]:
        out.print(
            f"  {len(doc['incomplete'])} half-written points (no manifest) ignored", markup=False
        )


@vault_app.command("list")
def vault_list(json_: JsonOpt = False) -> None:
    """List vaults."""
    if remote.active():
        docs = remote.get("/vaults")
    else:
        docs = [documents.vault_doc(v) for v in services().vaults.list_vaults()]
    if json_:
        emit_json(docs)
        return
    table = Listing(("NAME", "LOCATION", "STORAGE", "WHERE", "CREATED"))
    for v in docs:
        where = f"{v['path']} at {v['s3']['endpoint']}" if v["s3"] is not None else v["path"]
        table.add(v["name"], v["location"], v["storage"], where, render.when(v["created_at"]))
    render.print_table(table)


@vault_app.command("show")
def vault_show(
    name: Annotated[str | None, typer.Argument()] = None, json_: JsonOpt = False
) -> None:
    """Show a vault, its hosts and how many VMs it sees in each state."""
    if remote.active():
        # no name: the server's default vault, which its dashboard names
        name = name or remote.get("/dashboard")["vault"]
        doc = remote.get(f"/vaults/{quote(str(name), safe='')}")
    else:
        doc = documents.vault_summary_doc(services().vaults.show(name))
    if json_:
        emit_json(doc)
        return
    for key in ("name", "location", "storage", "path", "created_at"):
        out.print(f"{key:10} {doc[key]}", markup=False)
    out.print(f"{'soft del.':10} {_soft_delete(doc)}", markup=False)
    out.print(f"{'approvals':10} {_approvals(doc)}", markup=False)
    out.print(f"{'immutable':10} {doc['immutable']}", markup=False)
    if doc["s3"] is not None:
        out.print(f"{'endpoint':10} {doc['s3']['endpoint']}", markup=False)
    out.print("hosts      " + (", ".join(h["uri"] for h in doc["hosts"]) or "none"), markup=False)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(doc["vm_counts"].items())) or "none yet"
    out.print(f"VMs        {counts}", markup=False)


@vault_app.command("update")
def vault_update(
    name: Annotated[str, typer.Argument(help="The vault.")],
    soft_delete: Annotated[
        str | None,
        typer.Option(
            "--soft-delete",
            help="on: deleted points are kept soft-deleted for --soft-delete-days (default); "
            "off: deleted at once; always: on, and never again off (permanent).",
        ),
    ] = None,
    soft_delete_days: Annotated[
        int | None,
        typer.Option("--soft-delete-days", help="Days a soft-deleted point is kept (1-3650)."),
    ] = None,
    always_on: Annotated[
        bool, typer.Option("--always-on", help="The same as --soft-delete always.")
    ] = False,
    approvals: Annotated[
        str | None,
        typer.Option(
            "--approvals",
            help="Who must agree to operations that reduce protection: off (default), "
            "second-admin, delay (docs/approvals.md).",
        ),
    ] = None,
    approval_delay: Annotated[
        int | None,
        typer.Option(
            "--approval-delay", help="Hours a held operation waits in delay mode (1-720)."
        ),
    ] = None,
    approval_expiry: Annotated[
        int | None,
        typer.Option(
            "--approval-expiry", help="Hours a second-admin request waits undecided (1-720)."
        ),
    ] = None,
    immutable: Annotated[
        bool | None,
        typer.Option(
            "--immutable/--no-immutable",
            help="No point leaves before its retain-until; --no-immutable is refused once "
            "locked (docs/immutability.md).",
        ),
    ] = None,
    lock: Annotated[
        bool, typer.Option("--lock", help="With --immutable: for good (permanent).")
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Change a vault's settings: soft delete of its recovery points (docs/soft-delete.md),
    approvals (docs/approvals.md) or its immutability (docs/immutability.md, in a command of
    its own).  Weakening soft delete or approvals is held for approval where the vault's
    approvals are on."""
    if always_on:
        if soft_delete not in (None, "always"):
            raise InvalidInput("--always-on is --soft-delete always", what="--soft-delete")
        soft_delete = "always"
    change = SettingsChange(
        soft_delete, soft_delete_days, approvals, approval_delay, approval_expiry, immutable, lock
    )
    if remote.active():
        body: dict[str, Any] = {
            "soft_delete": change.soft_delete,
            "soft_delete_days": change.soft_delete_days,
            "approvals": change.approvals,
            "approval_delay_hours": change.approval_delay_hours,
            "approval_expiry_hours": change.approval_expiry_hours,
            "immutable": change.immutable,
            "lock": change.lock,
        }
        doc = remote.holdable("PATCH", f"/vaults/{remote.part(name)}", body)
    else:
        vault = services().vault_settings.update(name, change, by=local_principal())
        doc = documents.vault_doc(vault)
    if json_:
        emit_json(doc)
        return
    out.print(
        f"vault {doc['name']}: soft delete {_soft_delete(doc)}; approvals {_approvals(doc)}; "
        f"immutable {doc['immutable']}",
        markup=False,
    )


@vault_app.command("delete")
def vault_delete(
    name: Annotated[str, typer.Argument(help="The vault.")],
    with_points: Annotated[
        bool,
        typer.Option("--with-points", help="Purge the points it holds too (else refused)."),
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Delete a vault: its catalog entry, its notification targets and every object of its
    storage.  Refused while VMs are registered with it or policies use it, and while it holds
    points unless --with-points; held for approval where its approvals are on."""
    if remote.active():
        doc = remote.holdable("DELETE", f"/vaults/{remote.part(name)}", with_points=with_points)
    else:
        purged = services().vaults.delete(name, with_points=with_points, by=local_principal())
        doc = {"deleted": name, "points_purged": purged}
    if json_:
        emit_json(doc)
        return
    out.print(
        f"vault {doc['deleted']} deleted ({doc['points_purged']} point(s) purged)", markup=False
    )


def _approvals(doc: dict[str, Any]) -> str:
    """A vault document's approval setting, for people."""
    if doc["approvals"] == "delay":
        return f"delay {doc['approval_delay_hours']} h"
    if doc["approvals"] == "second-admin":
        return f"second-admin (requests expire after {doc['approval_expiry_hours']} h)"
    return "off"


def _soft_delete(doc: dict[str, Any]) -> str:
    """A vault document's soft delete, for people."""
    if doc["soft_delete"] == "off":
        return "off (points are deleted at once)"
    return f"{doc['soft_delete']}, {doc['soft_delete_days']} day(s)"
