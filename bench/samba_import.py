"""Add objects to a STOPPED Samba DC's database through Samba's own module stack (benchmarks only).

    /usr/bin/python3 bench/samba_import.py DIRECTORY/private/sam.ldb DIRECTORY/etc/smb.conf RECORDS

Run by Debian's ``python3``, which has Samba's Python bindings (``python3-samba``, installed with
the DC's packages); the project's virtualenv has not. RECORDS is a JSON list of LDAP entries,
``{"dn": …, "objectClass": [...], attribute: value or [values]}``, in an order where each
entry's parent and every DN it names (``member``) come first.

Each entry goes through ``SamDB.add`` as the system user: the same module stack an LDAP add goes
through (samldb, objectguid, descriptor, linked_attributes, repl_meta_data …), so Samba makes the
objectGUID, the SID from the DC's RID pool, the USNs, replication metadata and the ``memberOf``
back links, exactly as for an add over LDAP — only without the network, the bind's access checks
and a transaction per object (one for all, in batch mode: see :data:`BATCH_MODE`). Prints the
number of entries and the seconds taken.
"""

from __future__ import annotations

import json
import sys
import time

from samba.auth import system_session  # type: ignore[import-not-found]
from samba.param import LoadParm  # type: ignore[import-not-found]
from samba.samdb import SamDB  # type: ignore[import-not-found]

BATCH_MODE = ["batch_mode:1", "transaction_index_cache_size:202481"]
"""As ``samba-tool domain join`` opens a new DC's database (``provision.setup_samdb``, sized there
for 100,000 users): without batch mode each add is a nested transaction whose commit copies every
index list it touched into the outer one, and lists such as objectClass=user hold every account:
quadratic (10,000 pupils did not finish in 5 minutes). In batch mode a failed add fails the whole
transaction instead, which is all an import needs."""


def main() -> None:
    sam_ldb, smb_conf, records_path = sys.argv[1:4]
    with open(records_path, encoding="utf-8") as handle:
        records = json.load(handle)
    started = time.perf_counter()
    parameters = LoadParm()
    parameters.load(smb_conf)
    samdb = SamDB(url=sam_ldb, session_info=system_session(), lp=parameters, options=BATCH_MODE)
    samdb.transaction_start()
    try:
        for record in records:
            samdb.add(record)
    except BaseException:
        samdb.transaction_cancel()
        raise
    samdb.transaction_commit()
    print(json.dumps({"added": len(records), "seconds": time.perf_counter() - started}))


if __name__ == "__main__":
    main()
