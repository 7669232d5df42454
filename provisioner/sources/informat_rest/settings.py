"""The ``source.informat_rest`` section of provisioner.yaml: Informat's OAuth2 REST APIs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from provisioner.checks import positive
from provisioner.errors import ConfigError
from provisioner.secret import Secret
from provisioner.sources.informat.params import check_day_option, check_schooljaar
from provisioner.sources.informat.settings import Timeouts, check_instelnrs, check_service_url
from provisioner.yamlnodes import existing

TOKEN_URL = "https://www.identityserver.be/connect/token"  # noqa: S105 - a URL, no secret
STUDENTS_URL = "https://leerlingenapi.informatsoftware.be"
EMPLOYEES_URL = "https://personeelsapi.informatsoftware.be"


def _check_datasets(values: list[str]) -> list[str]:
    from provisioner.sources.informat_rest.datasets import dataset  # the table imports settings

    for name in values:
        try:
            dataset(name)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
    return values


def _check_school_names(values: dict[str, str]) -> dict[str, str]:
    names = dict(zip(check_instelnrs(list(values)), values.values(), strict=True))
    for instelnr, name in names.items():
        if not name.strip():
            raise ValueError(f"the name of {instelnr} is empty")
    return names


@dataclass
class InformatRestConfig:
    instelnrs: list[str] = field(metadata={"check": check_instelnrs})
    client_id: str = ""
    client_secret: Secret | None = None
    """``${ENV_VAR}`` or ``file:PATH``, never the secret itself."""
    snapshot: Path | None = field(default=None, metadata={"check": existing})
    """A directory written by ``provisioner fetch --save``, read instead of the APIs."""
    token_url: str = field(default=TOKEN_URL, metadata={"check": check_service_url})
    students_url: str = field(default=STUDENTS_URL, metadata={"check": check_service_url})
    """The Leerlingen API (``/1/students``, ``/1/registrations``)."""
    employees_url: str = field(default=EMPLOYEES_URL, metadata={"check": check_service_url})
    """The Personeel API (``/employees``)."""
    schooljaar: str = field(default="auto", metadata={"check": check_schooljaar})
    referentiedatum: str = field(default="", metadata={"check": check_day_option})
    """The day whose registrations make ``Lln`` (empty or ``today``: the day of the read)."""
    school_names: dict[str, str] = field(
        default_factory=dict, metadata={"check": _check_school_names}
    )
    """The schools' names by instellingsnummer: the REST APIs do not give them, the web
    service's ``Lln.school`` and ``Subgroepen.School`` do."""
    datasets: list[str] | None = field(default=None, metadata={"check": _check_datasets})
    """Data sets ``fetch`` reads when the command line names none."""
    timeout: Timeouts = field(default_factory=lambda: Timeouts(connect=10.0, read=120.0))
    retries: int = 3
    """Attempts after the first for 429 (after its Retry-After), 5xx, timeouts and cut-off
    answers."""
    concurrency: int = 4
    """Schools read at once (1–16), each its endpoints one after the other."""
    max_answer_mb: float = field(default=512.0, metadata={"check": positive})
    """The largest answer accepted for one endpoint of one school, in MB."""
    ca_file: Path | None = None
    """A CA bundle trusted instead of the system store; certificates are always verified."""

    def __post_init__(self) -> None:
        if self.snapshot is None and (not self.client_id or self.client_secret is None):
            raise ValueError(
                "give client_id and client_secret (client_secret: ${ENV_VAR} or file:PATH), "
                "or snapshot (a directory written by fetch --save)"
            )
        if self.snapshot is not None and (self.client_id or self.client_secret is not None):
            raise ValueError("give either snapshot or client_id and client_secret, not both")
        if not 0 <= self.retries <= 10:
            raise ValueError("retries must be between 0 and 10")
        if not 1 <= self.concurrency <= 16:
            raise ValueError("concurrency must be between 1 and 16")
        unknown = sorted(set(self.school_names) - set(self.instelnrs))
        if unknown:
            raise ValueError(f"school_names names {', '.join(unknown)}, not among instelnrs")

    @property
    def max_answer_bytes(self) -> int:
        return round(self.max_answer_mb * (1 << 20))
