"""Smoke tests of the throwaway Samba AD DC (tests/fakes/samba.py) with ldap3.

They prove the DC is a usable stand-in for Active Directory before the AD target relies on it:
TLS that really verifies (and really fails without the test CA), StartTLS, the administrator's
bind names, AD-style users with a password, paging over more than AD's 1,000-entry page limit,
and tree delete. Everything is created under OUs the tests own and removed again.
"""

from __future__ import annotations

import ssl
import time
import uuid
from collections.abc import Iterator

import pytest
from ldap3 import BASE, LEVEL, Connection, Server, Tls
from ldap3.core.exceptions import LDAPBindError, LDAPSocketOpenError

from tests.fakes.samba import SambaDC

USER_CLASSES = ["top", "person", "organizationalPerson", "user"]
OU_CLASSES = ["top", "organizationalUnit"]
NORMAL_ACCOUNT = 512  # userAccountControl: enabled normal account
TREE_DELETE = "1.2.840.113556.1.4.805"  # LDAP_SERVER_TREE_DELETE_OID
BULK_ENTRIES = 1_100  # more than AD's MaxPageSize (1,000), so only paging can fetch them all
PAGE_SIZE = 250


def unicode_pwd(password: str) -> bytes:
    """AD's unicodePwd value: the password in double quotes, encoded UTF-16-LE."""
    return f'"{password}"'.encode("utf-16-le")


def exists(conn: Connection, dn: str) -> bool:
    conn.search(dn, "(objectClass=*)", BASE, attributes=[])
    if conn.result["description"] == "noSuchObject":
        return False
    assert conn.result["description"] == "success", conn.result
    return True


def can_read(conn: Connection, dn: str) -> bool:
    """Whether the connection's bind took effect: AD answers anonymous searches with an error.

    (Samba has no Who Am I extended operation, which Windows AD has, so this is the check.)
    """
    conn.search(dn, "(objectClass=*)", BASE, attributes=["distinguishedName"])
    return conn.result["description"] == "success" and len(conn.entries) == 1


def tree_delete(conn: Connection, dn: str) -> None:
    """Delete ``dn`` with everything below it in one operation (AD's tree delete control)."""
    conn.delete(dn, controls=[(TREE_DELETE, True, None)])
    assert conn.result["description"] in {"success", "noSuchObject"}, conn.result


@pytest.fixture(scope="module")
def admin(samba_dc: SambaDC) -> Iterator[Connection]:
    conn = samba_dc.connect()
    yield conn
    conn.unbind()


@pytest.fixture
def test_ou(admin: Connection, samba_dc: SambaDC) -> Iterator[str]:
    """A fresh OU directly under the base DN, removed with everything in it afterwards."""
    dn = f"OU=smoke-{uuid.uuid4().hex[:8]},{samba_dc.base_dn}"
    assert admin.add(dn, OU_CLASSES), admin.result
    yield dn
    tree_delete(admin, dn)


def test_ldaps_verifies_the_certificate_against_the_test_ca(samba_dc: SambaDC) -> None:
    conn = samba_dc.connect()
    try:
        assert conn.bound
        assert conn.server.ssl and conn.server.port == 636
        assert conn.server.tls.validate == ssl.CERT_REQUIRED
        assert conn.server.tls.ca_certs_file == str(samba_dc.ca_file)
        assert conn.socket.version() in {"TLSv1.2", "TLSv1.3"}
    finally:
        conn.unbind()


def test_ldaps_without_the_test_ca_fails_verification(samba_dc: SambaDC) -> None:
    # The system trust store only: the DC's certificate must not verify, or the CA check above
    # would prove nothing.
    server = Server(
        samba_dc.host,
        port=samba_dc.ldaps_port,
        use_ssl=True,
        tls=Tls(validate=ssl.CERT_REQUIRED),
        connect_timeout=5,
    )
    with pytest.raises(LDAPSocketOpenError, match="CERTIFICATE_VERIFY_FAILED"):
        Connection(
            server,
            user=samba_dc.admin_user,
            password=samba_dc.admin_password,
            auto_bind=True,
            receive_timeout=5,
        )


def test_the_certificate_names_the_dc_by_host_name_too(samba_dc: SambaDC) -> None:
    # Clients that connect by name (DC1.school.test via /etc/hosts or DNS) verify as well.
    server = Server(
        samba_dc.host,
        port=samba_dc.ldaps_port,
        use_ssl=True,
        tls=Tls(
            validate=ssl.CERT_REQUIRED,
            ca_certs_file=str(samba_dc.ca_file),
            valid_names=[samba_dc.tls_name],
        ),
    )
    conn = Connection(
        server, samba_dc.admin_user, samba_dc.admin_password, auto_bind=True, receive_timeout=5
    )
    certificate = conn.socket.getpeercert()
    conn.unbind()
    assert ("DNS", samba_dc.tls_name) in certificate["subjectAltName"]
    assert ("IP Address", samba_dc.host) in certificate["subjectAltName"]


def test_starttls_on_the_plain_port(samba_dc: SambaDC) -> None:
    conn = samba_dc.connect(starttls=True)
    try:
        assert not conn.server.ssl and conn.server.port == 389
        assert conn.tls_started and conn.bound
        assert can_read(conn, samba_dc.base_dn)
    finally:
        conn.unbind()


def test_a_simple_bind_in_the_clear_is_refused(samba_dc: SambaDC) -> None:
    # AD's default, kept on purpose: the AD target must use LDAPS or StartTLS.
    conn = Connection(
        samba_dc.server(use_ssl=False),
        user=samba_dc.admin_user,
        password=samba_dc.admin_password,
        receive_timeout=5,
    )
    conn.open()
    try:
        assert not conn.bind()
        assert conn.result["description"] == "strongerAuthRequired"
    finally:
        conn.unbind()


@pytest.mark.parametrize("form", ["admin_user", "admin_upn", "admin_dn"])
def test_the_administrator_binds_with_each_name_form(samba_dc: SambaDC, form: str) -> None:
    conn = samba_dc.connect(user=getattr(samba_dc, form))
    try:
        assert conn.bound and can_read(conn, samba_dc.admin_dn)
    finally:
        conn.unbind()


def test_an_anonymous_connection_cannot_read(samba_dc: SambaDC) -> None:
    # What makes can_read() a proof of a working bind.
    conn = Connection(samba_dc.server(), receive_timeout=5)
    conn.open()
    try:
        assert not can_read(conn, samba_dc.base_dn)
        assert conn.result["description"] == "operationsError"
    finally:
        conn.unbind()


def test_a_wrong_password_is_refused(samba_dc: SambaDC) -> None:
    with pytest.raises(LDAPBindError, match="invalidCredentials"):
        samba_dc.connect(password="not the password")


def test_reads_the_base_dn(admin: Connection, samba_dc: SambaDC) -> None:
    assert admin.server.info.other["defaultNamingContext"] == [samba_dc.base_dn]
    admin.search(
        samba_dc.base_dn,
        "(objectClass=domain)",
        BASE,
        attributes=["distinguishedName", "objectSid", "pwdProperties", "minPwdLength"],
    )
    [domain] = admin.entries
    assert domain.entry_dn == samba_dc.base_dn
    assert str(domain.objectSid.value).startswith("S-1-5-21-")
    # The offline policy step took effect: no complexity rule, no minimum length.
    assert domain.pwdProperties.value == 0
    assert domain.minPwdLength.value == 0
    admin.search(samba_dc.base_dn, "(objectClass=container)", LEVEL, attributes=["cn"])
    assert {"Users", "Computers"} <= {entry.cn.value for entry in admin.entries}


def test_creates_a_user_with_a_password_who_can_bind(
    admin: Connection, samba_dc: SambaDC, test_ou: str
) -> None:
    password = "Leerling-2025"
    dn = f"CN=Jan Peeters,{test_ou}"
    created = admin.add(
        dn,
        USER_CLASSES,
        {
            "sAMAccountName": "jan.peeters",
            "userPrincipalName": f"jan.peeters@{samba_dc.dns_domain}",
            "givenName": "Jan",
            "sn": "Peeters",
            "displayName": "Jan Peeters",
            "unicodePwd": unicode_pwd(password),
            "userAccountControl": NORMAL_ACCOUNT,
        },
    )
    assert created, admin.result
    admin.search(dn, "(objectClass=user)", BASE, attributes=["userAccountControl", "objectGUID"])
    [user] = admin.entries
    assert user.userAccountControl.value == NORMAL_ACCOUNT
    assert len(user.objectGUID.raw_values[0]) == 16

    for name in (f"jan.peeters@{samba_dc.dns_domain}", f"{samba_dc.domain}\\jan.peeters"):
        conn = samba_dc.connect(user=name, password=password)
        assert conn.bound and can_read(conn, dn)
        conn.unbind()
    with pytest.raises(LDAPBindError, match="invalidCredentials"):
        samba_dc.connect(user=f"{samba_dc.domain}\\jan.peeters", password="wrong")


def test_a_paged_search_returns_more_than_1000_entries(
    admin: Connection, samba_dc: SambaDC, test_ou: str
) -> None:
    # Bulk users without a password: a password set costs the DC ~20 ms of CPU each.
    started = time.monotonic()
    for number in range(BULK_ENTRIES):
        name = f"bulk{number:04d}"
        assert admin.add(f"CN={name},{test_ou}", USER_CLASSES, {"sAMAccountName": name}), (
            admin.result
        )
    created = time.monotonic()

    pages: list[int] = []
    names: set[str] = set()
    cookie: bytes | None = None
    while True:
        admin.search(
            test_ou,
            "(&(objectClass=user)(sAMAccountName=bulk*))",
            LEVEL,
            attributes=["sAMAccountName"],
            paged_size=PAGE_SIZE,
            paged_cookie=cookie,
        )
        assert admin.result["description"] == "success", admin.result
        pages.append(len(admin.entries))
        names.update(entry.sAMAccountName.value for entry in admin.entries)
        cookie = admin.result["controls"]["1.2.840.113556.1.4.319"]["value"]["cookie"]
        if not cookie:
            break
    searched = time.monotonic()

    assert len(names) == BULK_ENTRIES
    assert max(pages) <= PAGE_SIZE
    assert len(pages) == -(-BULK_ENTRIES // PAGE_SIZE)
    # ldap3's own paging helper, as the AD target is likely to use it, sees the same entries.
    entries = admin.extend.standard.paged_search(
        test_ou, "(sAMAccountName=bulk*)", LEVEL, attributes=["cn"], paged_size=500
    )
    assert sum(1 for entry in entries if entry["type"] == "searchResEntry") == BULK_ENTRIES

    tree_delete(admin, test_ou)
    assert not exists(admin, test_ou)
    deleted = time.monotonic()
    print(
        f"\n{BULK_ENTRIES} users created in {created - started:.1f} s, paged search "
        f"({len(pages)} pages) {searched - created:.2f} s, tree delete "
        f"{deleted - searched:.1f} s"
    )


def test_tree_delete_removes_an_ou_with_everything_in_it(
    admin: Connection, samba_dc: SambaDC
) -> None:
    top = f"OU=tree-{uuid.uuid4().hex[:8]},{samba_dc.base_dn}"
    inner = f"OU=1A,{top}"
    assert admin.add(top, OU_CLASSES), admin.result
    assert admin.add(inner, OU_CLASSES), admin.result
    assert admin.add(f"CN=tree.user,{inner}", USER_CLASSES, {"sAMAccountName": "tree.user"})
    assert admin.add(
        f"CN=klas-1A,{inner}",
        ["top", "group"],
        {"sAMAccountName": "klas-1A", "member": [f"CN=tree.user,{inner}"]},
    ), admin.result

    # Without the control AD refuses to delete a non-leaf entry.
    admin.delete(top)
    assert admin.result["description"] == "notAllowedOnNonLeaf"
    tree_delete(admin, top)
    assert not exists(admin, top)
    admin.search(samba_dc.base_dn, "(sAMAccountName=tree.user)", attributes=[])
    assert admin.entries == []


def test_a_paused_dc_keeps_its_domain_and_serves_it_again(samba_dc: SambaDC) -> None:
    """pause() stops Samba but keeps its directory (a benchmark imports into the stopped
    database, bench/samba_import.py); restart() serves the same domain again. Last in this
    module: a pause ends every open connection, the module's ``admin`` one too."""
    conn = samba_dc.connect()
    ou = f"OU=paused-{uuid.uuid4().hex[:8]},{samba_dc.base_dn}"
    assert conn.add(ou, OU_CLASSES), conn.result
    conn.unbind()
    assert samba_dc.directory is not None
    sam_ldb = samba_dc.directory / "private" / "sam.ldb"

    samba_dc.pause()
    try:
        assert not samba_dc.running()
        assert sam_ldb.exists()
    finally:
        samba_dc.restart()

    conn = samba_dc.connect()
    try:
        assert exists(conn, ou)
    finally:
        tree_delete(conn, ou)
        conn.unbind()
