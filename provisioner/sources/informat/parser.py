"""Streaming, namespace-agnostic parser for Informat answers.

One parser reads both answer shapes: the bare ``ArrayOf<Item>`` of the GET/POST forms and the SOAP
``<OpResponse><OpResult>`` envelope. Items are converted as soon as their end tag arrives and then
dropped from the tree, so memory holds the records, not the document.

Records keep Informat's field names. The three forms of "no value" (``<X />``, an omitted element,
``xsi:nil="true"``) all mean the same here: the field is absent from the record, so
``record.get(name)`` is ``None`` for each of them. Per-person containers (``Relaties``…) are always
lists, also when they hold one child or none.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any

from lxml import etree

from provisioner.errors import AuthenticationError, SourceError
from provisioner.log import redact
from provisioner.sources.informat.operations import DateFormat, Operation

Record = dict[str, Any]
"""One row: field name → text, or → list of records for a per-person container."""


@dataclass
class RawAnswer:
    """What one call returned: the records, and the hash and size of the bytes they came from."""

    records: list[Record]
    sha256: str
    size: int
    fields_seen: frozenset[str]


XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"

_YMD = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_DMY = re.compile(r"^(\d{2})\.(\d{2})\.(\d{4})$")
_DATETIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})?$"
)
_DATE_PATTERNS: dict[str, tuple[re.Pattern[str], ...]] = {
    "ymd": (_YMD,),
    "dmy": (_DMY,),
    "datetime": (_DATETIME,),
    "any": (_YMD, _DMY, _DATETIME),
}
# .NET writes DateTime.MinValue where a non-nullable date has no value.
_NO_DATE = "0001-01-01"
_HEAD = 512
DEFAULT_MAX_ANSWER_BYTES = 1 << 30
"""A generous cap on one answer: the largest real data sets are tens of megabytes."""
# Items are converted and dropped as they complete; this much of an answer without a complete item
# means it holds something else, which would otherwise pile up in memory. A real item is a few KB;
# the tree of 1 MB of tiny elements takes about 35 MB, and up to 16 answers are read at once.
_MAX_BYTES_WITHOUT_ITEM = 1 << 20
_DECLARATION = re.compile(rb"<!(DOCTYPE|ENTITY)", re.I)
_ELEMENT_NAME = re.compile(rb"<(?:[\w.-]+:)?([A-Za-z_][\w.-]*)(?=[\s/>])")
"""A start tag's local name; only complete names (the head may end inside a tag)."""
_WRAPPERS = {"Envelope", "Body", "Header"}
# Most fields repeat a few values (school, class, afdeling, codes): records share one string per
# distinct value, which halves the memory of a large school. Fields with more distinct values than
# this (keys, names) are not pooled.
_POOL_LIMIT = 2048
_NO_POOL: dict[str, str] = {}


def normalise_date(value: str, date_format: DateFormat) -> str | None:
    """ISO ``YYYY-MM-DD`` (or ``YYYY-MM-DDTHH:MM:SS`` when the time is not midnight); None for
    .NET's "no date". Anything else is an error: a misread date is worse than a stopped run."""
    text = value.strip()
    for pattern in _DATE_PATTERNS[date_format]:
        match = pattern.match(text)
        if match is None:
            continue
        if pattern is _DMY:
            day, month, year = match.groups()
        else:
            year, month, day = match.groups()[:3]
        iso = f"{year}-{month}-{day}"
        if iso == _NO_DATE:
            return None
        dt.date(int(year), int(month), int(day))  # raises on 31-02
        if pattern is _DATETIME:
            clock = match.group(4, 5, 6)
            if clock != ("00", "00", "00"):
                return f"{iso}T{':'.join(clock)}"
        return iso
    raise ValueError(f"{value!r} is not a date in the expected form")


def _local(tag: str) -> str:
    return tag[tag.rfind("}") + 1 :]


def _flip_first(name: str) -> str:
    return (name[0].swapcase() + name[1:]) if name else name


class AnswerParser:
    """Parses one answer of one operation; feed it bytes, then call :meth:`close`."""

    def __init__(
        self,
        op: Operation,
        what: str,
        *,
        fields: Collection[str] | None = None,
        max_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    ) -> None:
        self.op = op
        self.what = what
        self.records: list[Record] = []
        self.max_bytes = max_bytes
        self.size = 0
        self._size_at_last_item = 0
        self._keep = None if fields is None else frozenset(fields) | {op.key}
        # Real answers start the item name lower- or upper-case; accept both.
        self._item_tags = {op.item, _flip_first(op.item)}
        self._parser = etree.XMLPullParser(
            events=("end",),
            tag=tuple("{*}" + t for t in self._item_tags),
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
        )
        self._names: dict[str, str] = {}  # "{namespace}Naam" -> "Naam"
        self._converters: dict[str, Callable[[str], str | None]] = {
            name: self._date_converter(name) for name in op.date_fields
        }
        for name in ("instelnr", "Instelnr"):
            self._converters[name] = lambda text: text.strip().zfill(6)
        self._head = b""
        self._pools: dict[str, dict[str, str]] = {}
        self._unexpected: set[str] = set()

    def _date_converter(self, name: str) -> Callable[[str], str | None]:
        date_format = self.op.date_format

        def convert(text: str) -> str | None:
            try:
                return normalise_date(text, date_format)
            except ValueError as exc:
                raise _FieldError(name, str(exc)) from None

        return convert

    # -- feeding -----------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise self.size_error()
        # The first bytes are held back until there are enough to describe a bad answer well.
        if len(self._head) < _HEAD:
            self._head += chunk
            if len(self._head) < _HEAD:
                return
            self._check_prolog()
            chunk = self._head
        self._feed(chunk)
        if self.size - self._size_at_last_item > _MAX_BYTES_WITHOUT_ITEM:
            raise SourceError(
                f"{self.what}: more than {_megabytes(_MAX_BYTES_WITHOUT_ITEM)} of the answer "
                f"held no complete <{self.op.item}> record{self._first_elements()}; this is not "
                f"the data set (if Informat renamed the item, correct {self.op.name} in the "
                "operations table)"
            )

    def size_error(self) -> SourceError:
        return SourceError(
            f"{self.what}: the answer is larger than {_megabytes(self.max_bytes)}, the most this "
            "configuration accepts (max_answer_mb in the informat settings); if the data set "
            "really is this large, raise that limit"
        )

    def _check_prolog(self) -> None:
        """Informat's answers never declare a document type; one that does could define entities,
        which would turn fields into empty lists rather than text. An HTML page is reported as
        such when the XML parser stumbles over it."""
        head = self._head
        match = _DECLARATION.search(head)
        if match is None or head[match.start() : match.start() + 14].lower() == b"<!doctype html":
            return  # an HTML page (also XHTML, or after a byte order mark): said as such later
        start = _ELEMENT_NAME.search(head)
        if start is None or match.start() < start.start():
            raise self._declaration_error()

    def _declaration_error(self) -> SourceError:
        return SourceError(
            f"{self.what}: Informat answered with a DOCTYPE (a document type or entity "
            "declaration), which its answers never hold; the answer is refused rather than read "
            "with fields silently left empty"
        )

    def _first_elements(self) -> str:
        """The first element names in the answer after its envelope, to say what it holds."""
        names = [m.decode("ascii", "replace") for m in _ELEMENT_NAME.findall(self._head)]
        shown = [n for n in names if n not in _WRAPPERS and not n.startswith("ArrayOf")]
        envelope = (f"{self.op.name}Response", f"{self.op.name}Result")
        shown = [n for n in dict.fromkeys(shown) if n not in envelope][:3]
        return f" (it starts with <{'>, <'.join(shown)}>)" if shown else ""

    def _feed(self, chunk: bytes) -> None:
        try:
            self._parser.feed(chunk)
        except etree.XMLSyntaxError as exc:
            raise self._syntax_error(exc) from None
        self._drain()

    def close(self) -> list[Record]:
        if not self._head.strip():
            raise SourceError(f"{self.what}: the answer is empty (no XML at all)")
        if len(self._head) < _HEAD:
            self._check_prolog()
            self._feed(self._head)
        try:
            root = self._parser.close()
        except etree.XMLSyntaxError as exc:
            raise self._syntax_error(exc) from None
        self._drain()
        self._check_declarations(root)
        self._check_root(root)
        return self.records

    @property
    def fields_seen(self) -> frozenset[str]:
        """Every element name seen inside items, also of fields not kept (for typo checks)."""
        return frozenset(self._names.values())

    def _check_declarations(self, element: Any) -> None:
        tree = element.getroottree()
        if _local(tree.getroot().tag).lower() == "html":
            return  # an (X)HTML page with its doctype: the root check names it
        if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
            raise self._declaration_error()

    def _drain(self) -> None:
        records = self.records
        for _event, item in self._parser.read_events():
            if not records:
                self._check_declarations(item)  # a prolog longer than the head checked so far
            self._size_at_last_item = self.size
            try:
                records.append(self._convert(item))
            except _FieldError as exc:
                key = item.findtext("{*}" + self.op.key) or "?"
                raise SourceError(
                    f"{self.what}: record {self.op.key}={key}: field {exc.field}: {exc.message}"
                ) from None
            # Drop what has been converted, but remember any sibling that is not an item.
            parent = item.getparent()
            previous = item.getprevious()
            while previous is not None:
                if isinstance(previous.tag, str) and _local(previous.tag) not in self._item_tags:
                    self._unexpected.add(_local(previous.tag))
                parent.remove(previous)
                previous = item.getprevious()
            item.clear(keep_tail=False)
            if self._unexpected:  # said now, not after downloading the rest of the answer
                raise self._unexpected_error()

    def _convert(self, element: Any) -> Record:
        record: Record = {}
        names = self._names
        keep = self._keep
        converters = self._converters
        pools = self._pools
        for child in element:
            tag = child.tag
            name = names.get(tag)
            if name is None:
                if not isinstance(tag, str):
                    continue  # a comment or processing instruction
                name = names[tag] = _local(tag)
            if keep is not None and name not in keep:
                continue
            if len(child) or name in self.op.nested:
                record[name] = [
                    self._convert(entry) if len(entry) else entry.text
                    for entry in child
                    if isinstance(entry.tag, str)
                    and entry.get(XSI_NIL) != "true"
                    and (len(entry) or entry.text is not None)
                ]
                continue
            text = child.text
            if text is None:
                continue  # <X /> and <X xsi:nil="true" />: no value
            converter = converters.get(name)
            if converter is not None:
                text = converter(text)
                if text is None:
                    continue
            pool = pools.get(name)
            if pool is None:
                pool = pools[name] = {}
            if pool is not _NO_POOL:
                shared = pool.get(text)
                if shared is not None:
                    text = shared
                elif len(pool) < _POOL_LIMIT:
                    pool[text] = text
                else:
                    pools[name] = _NO_POOL  # mostly distinct values (keys, names): stop pooling
            record[name] = text
        return record

    # -- checks ------------------------------------------------------------------------------

    def _check_root(self, root: Any) -> None:
        name = _local(root.tag)
        if name == "Envelope":
            array = self._soap_result(root)
        elif name.startswith("ArrayOf"):
            array = root
            # Unverified rows may guess the item (and so the root) wrong; their items are checked.
            if self.op.verified and name != self.op.root:
                raise SourceError(f"{self.what}: answered <{name}>, expected <{self.op.root}>")
        elif name.lower() == "html":
            raise SourceError(f"{self.what}: answered an HTML page{_html_title(root)}, not data")
        else:
            raise SourceError(f"{self.what}: answered <{name}>, expected <{self.op.root}>")
        self._unexpected.update(
            _local(c.tag)
            for c in array
            if isinstance(c.tag, str) and _local(c.tag) not in self._item_tags
        )
        if self._unexpected:
            raise self._unexpected_error()

    def _unexpected_error(self) -> SourceError:
        found = ", ".join(sorted(self._unexpected)[:5])
        return SourceError(
            f"{self.what}: the answer holds <{found}> where <{self.op.item}> was expected; "
            f"if Informat renamed the item, correct {self.op.name} in the operations table"
        )

    def _soap_result(self, envelope: Any) -> Any:
        body = next((c for c in envelope if _local(str(c.tag)) == "Body"), None)
        if body is None or len(body) == 0:
            raise SourceError(f"{self.what}: SOAP answer without a body")
        payload = body[0]
        if _local(payload.tag) == "Fault":
            raise fault_error(self.what, payload.findtext("{*}faultstring") or "(no fault text)")
        if _local(payload.tag) != f"{self.op.name}Response" or len(payload) == 0:
            raise SourceError(
                f"{self.what}: SOAP answer <{_local(payload.tag)}>, "
                f"expected <{self.op.name}Response>"
            )
        return payload[0]

    def _syntax_error(self, exc: etree.XMLSyntaxError) -> SourceError:
        head = self._head.lstrip()[:200].lower()
        if head.startswith((b"<!doctype html", b"<html")):
            title = re.search(rb"<title>(.*?)</title>", self._head, re.S | re.I)
            shown = (
                f" ({without_request(html.unescape(title.group(1).decode('utf-8', 'replace')))})"
                if title
                else ""
            )
            return SourceError(f"{self.what}: answered an HTML page{shown}, not XML")
        if not head.startswith(b"<"):
            snippet = without_request(self._head.strip()[:80].decode("utf-8", "replace"))
            return SourceError(f"{self.what}: the answer is not XML: {snippet!r}")
        return SourceError(f"{self.what}: malformed or truncated XML: {exc}")


def _megabytes(size: int) -> str:
    return f"{size / (1 << 20):,.4g} MB"  # 1,024 MB, 4 MB, 0.01 MB


class _FieldError(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _html_title(root: Any) -> str:
    title = root.findtext(".//{*}title")
    return f" ({without_request(title.strip())})" if title else ""


# An error page that echoes the request shows its parameters: a URL's query string, a form body
# (``login=…&paswoord=…``), single ``name=value`` pairs of the credentials, or the SOAP request's
# elements (raw or XML-escaped). None of that helps a reader; all of it may carry the password.
_QUERY_STRING = re.compile(r"\?[^\s\"'<>]*=[^\s\"'<>]*")
_FORM_BODY = re.compile(r"[\w.%-]+=[^\s&\"'<>]*(?:&(?:amp;)?[\w.%-]+=[^\s&\"'<>]*)+")
_CREDENTIAL_PAIR = re.compile(
    r"\b(login|paswoord|password|wachtwoord|sUserName|sPassword)=(?:[^\s&\"'<>]|&#?\w+;)*", re.I
)
_CREDENTIAL_ELEMENT = re.compile(
    r"(<|&lt;)(login|paswoord|sUserName|sPassword)(>|&gt;).*?(<|&lt;)/\2(>|&gt;)", re.I | re.S
)


def without_request(text: str) -> str:
    """*text* from an Informat answer, fit for an error message: request parameters that the page
    echoes are left out, and any registered secret, in any form, is replaced."""
    text = _CREDENTIAL_ELEMENT.sub(r"\1\2\3[left out]\4/\2\5", text)
    text = _QUERY_STRING.sub("?[request parameters left out]", text)
    text = _FORM_BODY.sub("[request parameters left out]", text)
    text = _CREDENTIAL_PAIR.sub(r"\1=[left out]", text)
    return redact(text)


_AUTH_WORDS = re.compile(r"login|paswoord|wachtwoord|password|authenti|credential", re.I)


def fault_error(what: str, text: str) -> SourceError:
    """A SOAP fault or ASMX error text as an error; credential problems are not retried."""
    message = " ".join(without_request(text).split())
    # ASMX wraps the real reason: "Server was unable to process request. ---> reason"
    reason = message.split("--->")[-1].strip() or message
    if _AUTH_WORDS.search(reason):
        return AuthenticationError(
            f"{what}: Informat rejected the login: {reason} "
            "(check login and password, and that web services are activated for the account)"
        )
    return SourceError(f"{what}: Informat reported an error: {reason}")


def parse_answer(
    chunks: Iterable[bytes],
    op: Operation,
    what: str,
    *,
    fields: Collection[str] | None = None,
    max_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
) -> list[Record]:
    """All records of one answer; any kind of bad answer is a :class:`SourceError`."""
    parser = AnswerParser(op, what, fields=fields, max_bytes=max_bytes)
    for chunk in chunks:
        parser.feed(chunk)
    return parser.close()
