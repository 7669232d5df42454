"""Streaming, namespace-agnostic parser for Informat answers.

One parser reads both answer shapes: the bare ``ArrayOf<Item>`` of the GET/POST forms and the SOAP
``<OpResponse><OpResult>`` envelope. Items are converted as soon as their end tag arrives and then
dropped from the tree, so memory holds the records, not the document.

Records keep Informat's field names. The forms of "no value" (``<X />``, an omitted element,
``xsi:nil="true"``, a value of only whitespace) all mean the same here: the field is absent from
the record, so ``record.get(name)`` is ``None`` for each of them. Per-person containers
(``Relaties``…) are always lists, also when they hold one child or none.

Only kept fields are converted (dates to ISO, instelnr to six digits), so a field no mapping reads
can never stop a read. A kept value that cannot be read (``2011-02-31``) does not stop it either:
the record is kept without that field and the parser notes an :class:`UnreadableValue`, as it does
for a record without a person key.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from provisioner.errors import AuthenticationError, SourceError
from provisioner.log import redact
from provisioner.sources.informat.operations import DateFormat, Operation

Record = dict[str, Any]
"""One row: field name → text, or → list of records for a per-person container."""


@dataclass(frozen=True)
class UnreadableValue:
    """A value of one record that could not be read; the record is kept with that field absent."""

    key: str | None
    """The record's person key; None when the key itself is missing or cannot be read."""
    field: str
    """The field, ``Container.Field`` inside a per-person container (``Relaties.Geboortedatum``)."""
    reason: str


@dataclass
class RawAnswer:
    """What one call returned: the records, and the hash and size of the bytes they came from."""

    records: list[Record]
    sha256: str
    size: int
    fields_seen: frozenset[str]
    problems: list[UnreadableValue] = field(default_factory=list)
    """Values of the kept fields that could not be read, in answer order."""
    prefixes: list[str] = field(default_factory=list)
    """SHA-256 of each whole megabyte prefix of the bytes, where the reader kept them (to tell
    early whether the next answer is the same: :mod:`.kept`)."""


XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"

# Every unambiguous form a date field has been seen in or may plausibly take. Year first is ISO
# (xs:date, xs:dateTime with or without a fraction and zone, a space instead of the T); otherwise
# the day comes first, as everywhere in Belgium. Month first is never guessed: 01/02/2011 is
# 1 February. One-digit days and months are fine.
_YEAR_FIRST = re.compile(
    r"(?P<year>\d{4})(?P<sep>[-/.])(?P<month>\d{1,2})(?P=sep)(?P<day>\d{1,2})"
    r"(?:[T ](?P<clock>\d{1,2}:\d{2}(?::\d{2})?)(?:[.,]\d+)?)?"
    r"\s*(?:Z|[+-]\d{2}:?\d{2})?",
    re.ASCII,  # digits 0-9 only: int() would read other scripts' digits too
)
_DAY_FIRST = re.compile(
    r"(?P<day>\d{1,2})(?P<sep>[-/.])(?P<month>\d{1,2})(?P=sep)(?P<year>\d{4})"
    r"(?:[T ](?P<clock>\d{1,2}:\d{2}(?::\d{2})?)(?:[.,]\d+)?)?",
    re.ASCII,
)
_DATE_FORMS = (_YEAR_FIRST, _DAY_FIRST)
# A value shown in a reason only when it is made of what dates are made of: it cannot be a name.
_DATE_LIKE = re.compile(r"[\d\s.:/,+TZ-]{1,40}", re.ASCII)
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


def normalise_date(value: str, date_format: DateFormat | None = None) -> str | None:
    """ISO ``YYYY-MM-DD`` (or ``YYYY-MM-DDTHH:MM:SS`` when the time is not midnight); None for an
    empty value and for .NET's "no date" (``0001-01-01``). Every unambiguous form is read whatever
    *date_format* the operation documents (it is accepted for callers, not used); a zone is
    ignored, so the date stays the one Informat wrote. A value that is not a real date in one of
    those forms is a :class:`ValueError` whose message says why, for a coordinator."""
    text = value.strip()
    if not text:
        return None
    for form in _DATE_FORMS:
        match = form.fullmatch(text)
        if match is None:
            continue
        year, month, day = (int(match[part]) for part in ("year", "month", "day"))
        if (year, month, day) == (1, 1, 1):
            return None
        day_first = form is _DAY_FIRST
        if not 1 <= month <= 12:
            # Say so where the value would be a date month first: never guessed, but explained.
            swapped = day_first and 1 <= day <= 12
            first = " (dates are read day first, never month first)" if swapped else ""
            raise ValueError(f"{_shown(text)} is not a date: there is no month {month}{first}")
        try:
            date = dt.date(year, month, day)
        except ValueError:
            raise ValueError(
                f"{_shown(text)} is not a date: month {month} of {year} has no day {day}"
            ) from None
        try:
            clock = _clock(match["clock"])
        except ValueError:
            raise ValueError(
                f"{_shown(text)} is not a date: the time {match['clock']} does not exist"
            ) from None
        return f"{date.isoformat()}T{clock}" if clock else date.isoformat()
    raise ValueError(
        f"{_shown(text)} is not a date in a form Informat uses "
        "(such as 2011-01-10, 2011-01-10T00:00:00 or 10.01.2011)"
    )


def _clock(text: str | None) -> str | None:
    """``HH:MM:SS`` of a time of day that is not midnight; None for midnight or no time."""
    if text is None:
        return None
    hours, minutes, seconds = ([*map(int, text.split(":")), 0])[:3]
    if hours > 23 or minutes > 59 or seconds > 59:
        raise ValueError(text)
    if hours == minutes == seconds == 0:
        return None
    return f"{hours:02}:{minutes:02}:{seconds:02}"


def _shown(text: str) -> str:
    """The value itself where it looks like a date (never personal), else only its length."""
    if _DATE_LIKE.fullmatch(text):
        return repr(text)
    return f"a value of {len(text)} characters (not shown)"


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
        # Converters raise ValueError for a value they cannot read.
        self._converters: dict[str, Callable[[str], str | None]] = dict.fromkeys(
            op.date_fields, normalise_date
        )
        for name in ("instelnr", "Instelnr"):
            self._converters[name] = lambda text: text.strip().zfill(6)
        # Keys are compared as text: " 123" and "123" must be one person.
        self._converters[op.key] = str.strip
        self.problems: list[UnreadableValue] = []
        self._unreadable: list[tuple[str, str]] = []  # (field, reason) of the record in hand
        self._head = b""
        self._pools: dict[str, dict[str, str]] = {}
        self._unexpected: set[str] = set()

    # -- feeding -----------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise size_error(self.what, self.max_bytes)
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
            record = self._convert(item)
            records.append(record)
            self._note_problems(record, len(records))
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

    def _note_problems(self, record: Record, position: int) -> None:
        """Turn the unreadable values of the record just converted into problems."""
        key_field = self.op.key
        key = record.get(key_field)
        if not isinstance(key, str):
            # Without its key nobody knows whose record this is; its other problems add nothing.
            record.pop(key_field, None)
            self.problems.append(
                UnreadableValue(
                    None,
                    key_field,
                    f"record {position} of the answer has no person key ({key_field} is empty, "
                    "missing or not a single value), so it belongs to nobody",
                )
            )
        else:
            self.problems.extend(UnreadableValue(key, f, r) for f, r in self._unreadable)
        self._unreadable.clear()

    def _convert(self, element: Any, within: str = "") -> Record:
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
                    self._convert(entry, f"{within}{name}.") if len(entry) else entry.text
                    for entry in child
                    if isinstance(entry.tag, str)
                    and entry.get(XSI_NIL) != "true"
                    and (len(entry) or not (entry.text is None or entry.text.isspace()))
                ]
                continue
            text = child.text
            if text is None or text.isspace():
                continue  # <X />, <X xsi:nil="true" /> and only whitespace: no value
            converter = converters.get(name)
            if converter is not None:
                try:
                    text = converter(text)
                except ValueError as exc:
                    self._unreadable.append((within + name, str(exc)))
                    continue
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


def size_error(what: str, max_bytes: int) -> SourceError:
    return SourceError(
        f"{what}: the answer is larger than {_megabytes(max_bytes)}, the most this "
        "configuration accepts (max_answer_mb in the informat settings); if the data set "
        "really is this large, raise that limit"
    )


def _megabytes(size: int) -> str:
    return f"{size / (1 << 20):,.4g} MB"  # 1,024 MB, 4 MB, 0.01 MB


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
