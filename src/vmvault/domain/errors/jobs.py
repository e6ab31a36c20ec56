"""The catalog and the jobs: lookups, conflicts between jobs, jobs of dead processes, and the
server that runs them."""

from __future__ import annotations

from vmvault.domain.errors.base import InvalidInput, VmvaultError


class CatalogError(VmvaultError):
    code = "CATALOG_ERROR"
    message = "the catalog database could not be used"
    remedy = "Check VMVAULT_HOME and its permissions; the catalog is VMVAULT_HOME/catalog.db."


class JobNotFound(VmvaultError):
    code = "JOB_NOT_FOUND"
    message = "no job with id {job}"
    remedy = "List jobs with 'vmvault jobs list'."
    kind = "usage"


class JobNotActive(VmvaultError):
    code = "JOB_NOT_ACTIVE"
    message = "job {job} has already ended ({state})"
    remedy = "Nothing to cancel; 'vmvault jobs show {job}' shows how it ended."
    kind = "usage"


class DiscoveryInProgress(VmvaultError):
    code = "DISCOVERY_IN_PROGRESS"
    message = "another discovery is already running for vault '{vault}' (job {job})"
    remedy = "Wait for the running discovery to finish ('vmvault jobs wait {job}'), then retry."
    kind = "usage"


class OperationInProgress(VmvaultError):
    code = "OPERATION_IN_PROGRESS"
    message = "another operation is in progress on this item: {vm} (job {job}, {job_type})"
    remedy = "Wait for job {job} to finish, then retry."
    kind = "usage"


class JobInterrupted(VmvaultError):
    code = "JOB_INTERRUPTED"
    message = "the process running this job ({pid}) ended before the job did"
    remedy = "Run the operation again."


class InvalidSetting(InvalidInput):
    code = "INVALID_SETTING"
    message = "setting {name}={value} is not valid"
    remedy = (
        "{hint} Fix {name} in vmvault's environment, or unset it to get the default "
        "(docs/server.md lists the settings). Nothing was done."
    )


class ListenFailed(VmvaultError):
    code = "LISTEN_FAILED"
    message = "cannot listen on {address}"
    remedy = (
        "Another process may hold the port ('ss -ltnp' shows which; another vmvault serve?): "
        "stop it or choose another port with --listen or VMVAULT_LISTEN. Ports below 1024 "
        "need root. Nothing was started: no job was claimed."
    )


class ServerComponentFailed(VmvaultError):
    code = "SERVER_COMPONENT_FAILED"
    message = (
        "the server's {component} crashed {crashes} times within {window} s; the server stopped"
    )
    remedy = (
        "The tracebacks logged before this line say why. Fix the cause and start the server "
        "again (under systemd, Restart=on-failure does so); running jobs were cancelled and "
        "queued jobs stay queued."
    )
