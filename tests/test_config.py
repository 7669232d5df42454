import textwrap
from pathlib import Path

import pytest

from provisioner.config import load_config
from provisioner.errors import ConfigError


def write(tmp_path, text, name="provisioner.yaml"):
    for snapshot in ("s", "snap"):  # the snapshot folders the configurations here name
        (tmp_path / snapshot).mkdir(exist_ok=True)
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


GOOD = """\
source:
  informat:
    url: https://webservice.informatsoftware.be/wsInformat.asmx
    login: webservices@school.be
    password: ${TEST_INFORMAT_PASSWORD}
    schooljaar: auto
    instelnrs: [30569, "030577"]
    referentiedatum: 15/01/2026
    hoofdstructuur: 311
    transport: soap
"""


def test_a_full_informat_section_loads_with_normalised_values(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_INFORMAT_PASSWORD", "s3cret")
    config = load_config(write(tmp_path, GOOD))
    informat = config.source.settings
    assert informat.instelnrs == ["030569", "030577"]
    assert informat.hoofdstructuur == "311"
    assert informat.transport == "soap"
    assert informat.password.reveal() == "s3cret"
    assert "s3cret" not in repr(informat)  # the dataclass repr shows the secret's origin only
    assert informat.query_options(__import__("datetime").date(2026, 1, 20)).referentiedatum == (
        "15-01-2026"
    )


def test_password_from_a_file_relative_to_the_config(tmp_path):
    (tmp_path / "pw").write_text("from-file\n")
    text = GOOD.replace("${TEST_INFORMAT_PASSWORD}", "file:pw")
    config = load_config(write(tmp_path, text))
    assert config.source.settings.password.reveal() == "from-file"


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        (
            "    transport: soap",
            "    transprot: soap",
            r":10: source\.informat\.transprot: unknown key",
        ),
        (
            "transport: soap",
            "transport: ftp",
            r":10: source\.informat\.transport: 'ftp' is not one of get, post, soap",
        ),
        (
            "schooljaar: auto",
            "schooljaar: 2025-2026",
            r":6: source\.informat\.schooljaar: schooljaar must be",
        ),
        (
            'instelnrs: [30569, "030577"]',
            "instelnrs: [1234567]",
            r":7: source\.informat\.instelnrs: instelnr must be up to six digits",
        ),
        ("referentiedatum: 15/01/2026", "referentiedatum: 31/02/2026", r":8: .*not a real date"),
        ("hoofdstructuur: 311", "hoofdstructuur: [311]", r":9: .*expected a single value"),
        (
            "${TEST_INFORMAT_PASSWORD}",
            "hunter2",
            r":5: source\.informat\.password: a secret must be a reference",
        ),
        ("url: https://webservice", "url: http://webservice", r":3: .*plain http is only allowed"),
    ],
)
def test_mistakes_name_file_line_and_key(tmp_path, monkeypatch, replace, by, expected):
    monkeypatch.setenv("TEST_INFORMAT_PASSWORD", "x")
    assert replace in GOOD
    path = write(tmp_path, GOOD.replace(replace, by))
    with pytest.raises(ConfigError, match=expected) as caught:
        load_config(path)
    assert str(caught.value).startswith(str(path) + ":")
    assert "hunter2" not in str(caught.value)


def test_url_and_snapshot_are_exclusive(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_INFORMAT_PASSWORD", "x")
    path = write(tmp_path, GOOD + "    snapshot: snap\n")
    with pytest.raises(ConfigError, match="exactly one of url"):
        load_config(path)


def test_required_keys_are_named(tmp_path):
    path = write(tmp_path, "source:\n  informat:\n    snapshot: snap\n")
    with pytest.raises(ConfigError, match=r":3: source\.informat\.instelnrs: is required"):
        load_config(path)


def test_broken_yaml_names_the_line(tmp_path):
    path = write(tmp_path, "source:\n  informat:\n    url: [unclosed\n")
    with pytest.raises(ConfigError, match=r"provisioner\.yaml:\d+: not valid YAML"):
        load_config(path)


def test_unknown_top_level_key(tmp_path):
    path = write(tmp_path, "sourc:\n  informat: {}\n")
    with pytest.raises(
        ConfigError,
        match=r":1: sourc: unknown key \(known here: [a-z, ]*source[a-z, ]*\)",
    ):
        load_config(path)


def test_missing_or_empty_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read configuration"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is empty"):
        load_config(write(tmp_path, ""))


def test_unknown_dataset_in_config(tmp_path):
    path = write(
        tmp_path,
        "source:\n  informat:\n    snapshot: s\n    instelnrs: ['030569']\n"
        "    datasets: [Lln, leerkrachten]\n",
    )
    with pytest.raises(ConfigError, match=r":5: .*did you mean Leerkrachten"):
        load_config(path)


def test_numbers_are_kept_as_written_not_as_yaml_reads_them(tmp_path):
    # YAML 1.1 reads 030567 as the octal number 12663; an instellingsnummer is what was typed.
    path = write(
        tmp_path, "source:\n  informat:\n    snapshot: s\n    instelnrs: [030567, 30569]\n"
    )
    assert load_config(path).source.settings.instelnrs == ["030567", "030569"]


def test_the_entra_example_loads(monkeypatch):
    from pathlib import Path

    monkeypatch.setenv("INFORMAT_PASSWORD", "x")
    monkeypatch.setenv("ENTRA_CLIENT_SECRET", "y")
    config = load_config(Path(__file__).parent.parent / "examples/entra/provisioner.yaml")
    assert config.target is not None and config.target.entra is not None
    entra = config.target.entra
    assert entra.domains == ["leerling.school.be", "school.be"]
    assert entra.client_secret is not None and entra.client_secret.reveal() == "y"
    assert entra.graph_url == "https://graph.microsoft.com/v1.0" and entra.group_prefix == "prov-"


ENTRA = (
    GOOD
    + """\
state: state.db
target:
  entra:
    tenant_id: school.onmicrosoft.com
    client_id: 6f1c2d3e-4a5b-4c6d-8e7f-0a1b2c3d4e5f
    client_secret: ${TEST_ENTRA_SECRET}
    domains: [school.be]
"""
)


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        ("domains: [school.be]", "domains: []", r":\d+: target\.entra\.domains: name at least"),
        ("domains: [school.be]", "domains: [school]", r"not a domain name: school"),
        (
            "domains: [school.be]",
            "domains: [school.be]\n    graph_url: http://graph.microsoft.com/v1.0",
            r"graph_url: expected an https:// URL",
        ),
        (
            "client_id: 6f1c2d3e-4a5b-4c6d-8e7f-0a1b2c3d4e5f",
            "client_id: provisioner",
            r"client_id: the app registration's application \(client\) id",
        ),
        (
            "    client_secret: ${TEST_ENTRA_SECRET}\n",
            "",
            r"give exactly one of client_secret and certificate",
        ),
        ("domains: [school.be]", "domains: [school.be]\n    group_prefix: ''", r"group_prefix"),
        ("state: state.db\n", "", r"a target needs a state store"),
        (
            "target:\n",
            "lifecycle:\n  disabled_ou: [Uit]\ntarget:\n",
            r"Entra ID has no OUs",
        ),
        (
            "target:\n  entra:\n",
            "target:\n  ad:\n    url: ldaps://dc\n    bind_user: x\n    password: ${TEST_ENTRA_SECRET}\n"
            "    base_dn: DC=x\n    managed_root: OU=y\n  entra:\n",
            r"configure one target: ad or entra",
        ),
    ],
)
def test_entra_mistakes_are_named(tmp_path, monkeypatch, replace, by, expected):
    monkeypatch.setenv("TEST_INFORMAT_PASSWORD", "x")
    monkeypatch.setenv("TEST_ENTRA_SECRET", "s3cret")
    assert replace in ENTRA
    with pytest.raises(ConfigError, match=expected) as caught:
        load_config(write(tmp_path, ENTRA.replace(replace, by)))
    assert "s3cret" not in str(caught.value)


AD = (
    GOOD
    + """\
state: state.db
target:
  ad:
    url: ldaps://dc.invalid
    bind_user: SCHOOL\\\\provisioner
    password: ${TEST_AD_PASSWORD}
    base_dn: DC=school,DC=be
    managed_root: OU=Provisioned
"""
)


def _ad(tmp_path, monkeypatch, replace="", by=""):
    monkeypatch.setenv("TEST_INFORMAT_PASSWORD", "x")
    monkeypatch.setenv("TEST_AD_PASSWORD", "s3cret")
    assert replace in AD
    return write(tmp_path, AD.replace(replace, by))


@pytest.mark.parametrize(
    "url_and_start_tls",
    [
        "url: ldap://dc.invalid",
        "url: ldap://dc.invalid\n    start_tls: true",
        "url: ldaps://dc.invalid",
    ],
)
def test_plain_ldap_is_refused_for_a_host_that_is_not_this_machine(
    tmp_path, monkeypatch, url_and_start_tls
):
    path = _ad(
        tmp_path,
        monkeypatch,
        "url: ldaps://dc.invalid",
        url_and_start_tls + "\n    allow_plain_ldap: true",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)  # reading the configuration is all it takes: nothing connects
    message = str(caught.value)
    assert message.startswith(f"{path}:")
    line = int(message.split(":")[1])
    assert path.read_text().splitlines()[line - 1].strip().startswith("url: ldap")
    assert "target.ad: allow_plain_ldap is only for a lab DC on this machine" in message
    assert "not dc.invalid" in message


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.3.2.1:3890", "[::1]:389", "localhost", "LocalHost:389"]
)
def test_plain_ldap_is_allowed_to_a_loopback_host(tmp_path, monkeypatch, host):
    path = _ad(
        tmp_path,
        monkeypatch,
        "url: ldaps://dc.invalid",
        f"url: ldap://{host}\n    allow_plain_ldap: true",
    )
    ad = load_config(path).target.ad
    assert ad is not None and ad.allow_plain_ldap and ad.url == f"ldap://{host}"


def test_plain_ldap_without_allow_plain_ldap_still_needs_tls(tmp_path, monkeypatch):
    path = _ad(tmp_path, monkeypatch, "url: ldaps://dc.invalid", "url: ldap://127.0.0.1")
    with pytest.raises(ConfigError, match="ldap:// sends the password in clear"):
        load_config(path)


def test_a_missing_ca_file_names_file_and_line(tmp_path, monkeypatch):
    path = _ad(
        tmp_path,
        monkeypatch,
        "    managed_root: OU=Provisioned\n",
        "    managed_root: OU=Provisioned\n    ca_file: certs/missing-ca.pem\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    line = path.read_text().splitlines().index("    ca_file: certs/missing-ca.pem") + 1
    assert str(caught.value) == (
        f"{path}:{line}: target.ad.ca_file: no such file: {tmp_path / 'certs' / 'missing-ca.pem'}"
    )


def test_a_ca_file_that_holds_no_certificate_is_named(tmp_path, monkeypatch):
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    path = _ad(
        tmp_path,
        monkeypatch,
        "    managed_root: OU=Provisioned\n",
        "    managed_root: OU=Provisioned\n    ca_file: ca.pem\n",
    )
    with pytest.raises(ConfigError, match=r":\d+: target\.ad\.ca_file: .*ca\.pem holds no CA"):
        load_config(path)


def test_a_real_ca_file_loads(tmp_path, monkeypatch):
    from tests.fakes.tls import make_test_ca

    pem = make_test_ca(tmp_path).ca_file
    path = _ad(
        tmp_path,
        monkeypatch,
        "    managed_root: OU=Provisioned\n",
        f"    managed_root: OU=Provisioned\n    ca_file: {pem}\n",
    )
    ad = load_config(path).target.ad
    assert ad is not None and ad.ca_file == pem


@pytest.mark.parametrize(
    ("key", "value"), [("ca_file", "no-such-ca.pem"), ("certificate", "no-such-app.pem")]
)
def test_entra_missing_files_name_file_and_line(tmp_path, monkeypatch, key, value):
    monkeypatch.setenv("TEST_INFORMAT_PASSWORD", "x")
    monkeypatch.setenv("TEST_ENTRA_SECRET", "s3cret")
    text = ENTRA + f"    {key}: {value}\n"
    if key == "certificate":
        text = text.replace("    client_secret: ${TEST_ENTRA_SECRET}\n", "")
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    line = text.splitlines().index(f"    {key}: {value}") + 1
    assert str(caught.value) == (
        f"{path}:{line}: target.entra.{key}: no such file: {tmp_path / value}"
    )


def test_a_secret_is_looked_up_when_it_is_used_and_says_where_it_was_written(tmp_path, monkeypatch):
    """validate and explain never contact the directory: they must not need its password. A
    reference that cannot be resolved fails when the secret is needed, at its file and line."""
    monkeypatch.delenv("NOT_SET_ANYWHERE_42", raising=False)
    path = write(tmp_path, GOOD.replace("${TEST_INFORMAT_PASSWORD}", "${NOT_SET_ANYWHERE_42}"))
    config = load_config(path)  # nothing is looked up yet
    password = config.source.settings.password
    with pytest.raises(ConfigError) as caught:
        password.reveal()
    assert str(caught.value) == (
        f"{path}:5: source.informat.password: environment variable NOT_SET_ANYWHERE_42 is not set"
    )
    monkeypatch.setenv("NOT_SET_ANYWHERE_42", "hunter2")
    assert password.reveal() == "hunter2"
    assert "hunter2" not in repr(password)


def test_a_secret_file_path_takes_variables_from_the_environment(tmp_path, monkeypatch):
    """systemd's LoadCredential= puts a service's secrets in $CREDENTIALS_DIRECTORY (see
    docs/operations.md): the path is expanded when the secret is used, so a shell without the
    variable can still validate, and a run without it is told what is missing."""
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "informat-password").write_text("from-systemd\n")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    text = GOOD.replace(
        "${TEST_INFORMAT_PASSWORD}", "file:${CREDENTIALS_DIRECTORY}/informat-password"
    )
    path = write(tmp_path, text)
    password = load_config(path).source.settings.password
    assert "CREDENTIALS_DIRECTORY" in repr(password)
    with pytest.raises(ConfigError) as caught:
        password.reveal()
    assert str(caught.value) == (
        f"{path}:5: source.informat.password: environment variable CREDENTIALS_DIRECTORY in the "
        "secret file's path is not set (systemd sets it only for a service with LoadCredential=)"
    )
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    assert password.reveal() == "from-systemd"


def test_the_example_configurations_load_as_they_are(monkeypatch):
    """A coordinator starts from these: they load unchanged (secrets are looked up only when
    used) and name their mappings."""
    root = Path(__file__).resolve().parent.parent
    for example in ("examples/provisioner.yaml", "examples/entra/provisioner.yaml"):
        config = load_config(root / example)
        assert config.mappings is not None and config.mappings.exists(), example


def test_a_path_that_is_not_there_is_named_at_its_line_relative_to_the_configuration(tmp_path):
    path = write(
        tmp_path, "source:\n  informat:\n    snapshot: ../elsewhere\n    instelnrs: ['1']\n"
    )
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert str(refused.value) == (
        f"{path}:3: source.informat.snapshot: {tmp_path.parent / 'elsewhere'} does not exist "
        "(a relative path is read from the configuration file's folder)"
    )
