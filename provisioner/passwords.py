"""Initial passwords: made at apply time, set over TLS, handed out on sheets, kept nowhere else.

A password exists in memory from its creation until the run ends, and on the hand-out sheets in
the sheets directory; it is never written to a plan file, the state store or a log. Sheets are
files readable by their owner only, in a directory nobody else can write to: one HTML file with a
page per OU (for pupils: per class, for the class teacher) and one CSV, listing only the accounts
whose password this run set.

**Escrow before the directory.** The sheet is written *before* any password is set and completed
afterwards (:class:`HandoutSheets`):

1. :meth:`HandoutSheets.begin` writes the CSV with every password about to be set, each marked
   ``pending``, and flushes it to disk (``fsync``). If that fails, the caller sets nothing.
2. The passwords are set.
3. :meth:`HandoutSheets.complete` writes the HTML sheet and replaces the CSV (atomically, via a
   temporary file and a rename) with its final form: a password that was set, "password unknown"
   where the account was already there (made by an earlier or a parallel run: the password this run
   chose was not set), and no line where the directory refused the account.

If the process dies between 1 and 3, the CSV still holds every password that may have been set,
marked as such; nothing is ever set that is not on disk first.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import math
import os
import secrets
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from provisioner.errors import ConfigError, ProvisionerError
from provisioner.files import create_private, private_dir, write_private
from provisioner.text import visible

# Short, common, unambiguous Dutch words that a twelve-year-old reads aloud and types without
# help: 3 to 7 letters a-z, no accents, no "y" (ij or y?), none starting with "i" (a capital I
# looks like l), nothing rude. tests/test_passwords.py checks all of that and the entropy.
_WORD_LIST = """
aap aardbei aarde agent ajuin akker alpaca ananas anker appel arend arm atlas auto avond azijn
baai baan bad bakker bal balkon ballon bami banaan band banjo bank bed beek beer beker bel berg
berk bes beuk bever bezem big bij bizon blad blauw blij blik bliksem bloem blok boei boek boer
bok boom boon boor boot bord borstel bos boter braam breed brief bril broek bron brood brug
bruin buffel bunzing burcht bureau bus cadeau camera cavia cello circus citroen clown dadel dag
dak dal dam dans dapper das dauw deeg deken den deur diamant dijk doel dokter dolfijn domino
donder donker doos dorp douche draad draak droog drop druif duif duiker duim duin dun dweil
dwerg eend egel eik eiland eland elfje emmer envelop erwt etui ezel fabriek fakkel fazant fee
feest fiets film fles fluit forel foto friet fris fuut gang gans garage garnaal gebak geel geit
getij gier giraf gist gitaar glas globe goed golf gordijn gorilla goud gracht gras grijs groen
groot grot gum haai haak haan haas hagedis hagel hal ham hamer hamster hand hard haring hark
harp hart haven havik heet hei heide hek helm hemel hen hengel herfst hert heuvel hoed hok
hommel hond honing hoog horloge hout huis hut jaar jaguar jam jas jojo judo juf juweel kaap
kaars kaart kaartje kaas kabel kachel kade kajak kalf kam kameel kamer kamp kanarie kaneel kano
kar karper kast kasteel kat kegel kelder kerk kers ketel ketting keuken kever kievit kiezel
kikker kind kip kist kiwi klas klaver klei klein klok knap knie knikker knoop knop koala koe
koek koekje koel koffer koffie kok kokos kom komeet kompas koning kool koor kop koper kopje
koraal kort koud kraai kraan krab krant kreeft kreek krekel krijt kristal kroket kroon kruik
kruk kuiken kuil kussen kust kwal kwartel kwast laag laars ladder lade laken lam lama lamp land
lang leeg leeuw lelie lente lepel les leuk libel licht lied lief lijm lijn lijst linde liniaal
lint lucht maan maand maat mais mand mango map markt marter mast mat matroos meel meer mees
meester meeuw melk meloen merel mes metro mier mist moeras mok mol molen mooi mos mossel mosterd
mot motor mug muis munt mus museum muts muur naald nacht nasi nat neef nest net neus nicht nieuw
noedel noot oase ochtend okapi olie olifant olijf oma oog ooi oom oor opa oranje otter oud oven
paard paars pad pak pakket paling pan panda panter pap papier paprika paraplu parel park pasta
pauw pedaal peer pen peper perron perzik pet piano piek pijl piloot pinguin pion piraat pizza
planeet plank plein ploeg poef poema poes pomp pont poort poot pop post pot potlood prei prins
pruim pudding puzzel raaf raam racket radijs radio raket ram rasp rat ree regen reiger reis rem
rendier reus ridder riem riet rietje rijst ring ritme rivier robijn robot roer rok rond rood
room roos rots route roze rugzak rups rustig sap saus schaak schaal schaap schaar schaats schat
schelp schep scherm schild schip schoen school schors schrift schroef schuim schuur servet sjaal
ski sla slager slak slang slee sleutel slim sloep sloot slot sluis smaragd snavel sneeuw snel
snoek snoep snorkel soep sok spar specht spek spel spiegel spijker spin spons spook sport
spreeuw sprint sprong staart stad stal stam station steen stempel step ster sterk stier stil
stoel stoer stof storm straat strand stuur suiker taart tablet tafel tak tam tang tante tapijt
tapir tas taxi tegel tennis tent theater thee tijger toast toekan tol tomaat ton tonijn toon top
tor toren tosti touw tram trap trein trommel trompet trots trui tuba tuin tulp tunnel twijg uil
vaas vacht valk vallei vanille varen vat veer veld verf vesting veulen video vijg vijver vin
vink viool vis vla vlag vleugel vlieg vlieger vlinder vloed vloer vlot vlug voet voetbal vol
vonk vork vos vriend vrij vrolijk vulkaan vuur wafel wagen walvis warm water week weg weide
wereld wesp wezel wieg wiel wild wilg wind winkel winnaar winter wip wit wol wolf wolk worm
worst wortel zaad zaag zacht zadel zak zalm zand zandbak zang zebra zee zeef zeehond zeep zeil
zilver zoet zolder zomer zon zout zuur zwaan zwaluw zwart zwembad
"""
WORDS: tuple[str, ...] = tuple(_WORD_LIST.split())
MIN_ENTROPY_BITS = 40
"""A configuration whose passwords are easier to guess than this is refused."""
_NUMBERS = 90  # the two-digit number at the end of a word password: 10 … 99
_RANDOM = string.ascii_letters + string.digits
_AMBIGUOUS = set("Il1O0o")
_ALPHABET = [c for c in _RANDOM if c not in _AMBIGUOUS]

PENDING = "pending: may or may not be set yet if this run was interrupted"
"""Status of a password on the escrow sheet before the directory has answered."""
SET = "set"
UNKNOWN = "password unknown: use `provisioner password reset`"
"""Status (and, on the printed sheet, the text instead of the password) of an account that was
already there: the password this run chose was not set."""
Status = Literal["pending", "set", "unknown"]
_STATUS_TEXT = {"pending": PENDING, "set": SET, "unknown": UNKNOWN}


@dataclass
class PasswordConfig:
    style: Literal["words", "random"] = "words"
    """``words``: Boom-Vis-Wolk-Tafel-42 (readable); ``random``: letters and digits."""
    length: int = 4
    """Words for ``words`` (at least 4), characters for ``random`` (at least 10): shorter is
    refused, it stays below :data:`MIN_ENTROPY_BITS` (see :func:`entropy_bits`)."""
    sheets: Path | None = None
    """Directory for the hand-out sheets; default: ``password-sheets`` next to the state store."""
    keep_days: int = 30
    """Sheets older than this are removed by the next ``provisioner run``: hand them out (or
    print them) before then."""

    def __post_init__(self) -> None:
        if self.keep_days < 1:
            raise ValueError("keep_days must be 1 or more")
        shortest = minimum_length(self.style)
        if self.length < shortest:
            bits = entropy_bits(self.style, self.length)
            raise ValueError(
                f"length must be at least {shortest} for style {self.style}: {self.length} make "
                f"passwords of {bits:.1f} bits, too easy to guess (at least {MIN_ENTROPY_BITS} "
                "bits are needed)"
            )


def entropy_bits(style: Literal["words", "random"], length: int) -> float:
    """How many bits of chance a generated password carries: log2 of the number of equally
    likely passwords :func:`generate` makes for *style* and *length*."""
    if style == "words":
        return length * math.log2(len(WORDS)) + math.log2(_NUMBERS)
    # Random: the strings over the alphabet that hold a lower case letter, an upper case letter
    # and a digit (inclusion-exclusion over the classes that may be missing).
    total = len(_ALPHABET)
    lower = sum(c.islower() for c in _ALPHABET)
    upper = sum(c.isupper() for c in _ALPHABET)
    digits = sum(c.isdigit() for c in _ALPHABET)
    complex_enough = (
        total**length
        - (total - lower) ** length
        - (total - upper) ** length
        - (total - digits) ** length
        + digits**length
        + upper**length
        + lower**length
    )
    return math.log2(complex_enough) if complex_enough > 0 else 0.0


def minimum_length(style: Literal["words", "random"]) -> int:
    """The shortest length that reaches :data:`MIN_ENTROPY_BITS` for *style*; random passwords
    also keep their earlier floor of 10 characters."""
    length = 1 if style == "words" else 10
    while entropy_bits(style, length) < MIN_ENTROPY_BITS:
        length += 1
    return length


def generate(config: PasswordConfig) -> str:
    """A new password; every form has upper case, lower case and digits (AD's complexity rule)."""
    if config.style == "words":
        words = [secrets.choice(WORDS).capitalize() for _ in range(config.length)]
        return "-".join(words) + f"-{secrets.randbelow(_NUMBERS) + 10}"
    while True:
        password = "".join(secrets.choice(_ALPHABET) for _ in range(config.length))
        if (
            any(c.islower() for c in password)
            and any(c.isupper() for c in password)
            and any(c.isdigit() for c in password)
        ):
            return password


@dataclass(frozen=True)
class Handout:
    username: str
    name: str
    group: str
    """What the sheet is per: the OU path (the class for pupils, the school for staff)."""
    password: str = field(repr=False)
    status: Status = "set"
    """``pending`` on the escrow, ``set`` once the directory took it, ``unknown`` when the account
    was already there (the password is then not shown)."""


def handout_group(ou: object, department: object) -> str:
    """The sheet an account's hand-out goes on: its OU path where the directory has OUs, else its
    department (the class). ``apply`` and ``password reset`` both use this, so one account always
    lands on the same sheet."""
    if isinstance(ou, list | tuple) and ou:
        return " / ".join(map(str, ou))
    return str(department or "(root)")


# -- what a cell may show ------------------------------------------------------------------------

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(text: str) -> str:
    """A CSV cell a spreadsheet shows as text: one starting like a formula (``=HYPERLINK(…)``)
    gets a leading ``'``, and control and bidi characters are written out
    (:func:`provisioner.text.visible`)."""
    if text.startswith(_FORMULA_START):
        text = "'" + text
    return visible(text)


# -- the sheets ------------------------------------------------------------------------------------


class SheetError(ProvisionerError):
    """A hand-out sheet could not be written."""


class HandoutSheets:
    """The sheets of one run: a CSV that is first the escrow and then the final list, and a
    printable HTML file written when the run is complete. See the module's docstring."""

    def __init__(self, csv_path: Path, html_path: Path, when: dt.datetime) -> None:
        self.csv_path = csv_path
        self.html_path = html_path
        self.when = when

    @classmethod
    def begin(
        cls, handouts: Sequence[Handout], directory: Path, when: dt.datetime
    ) -> HandoutSheets:
        """Write the escrow: every password in *handouts* (status ``pending``) in a new CSV, on
        disk before this returns. Raises :class:`SheetError` (or ConfigError for a directory
        others can write to), after which the caller must set no password."""
        try:
            private_dir(directory)  # refuses a link, another owner, group or world write
        except OSError as exc:
            raise SheetError(_cannot_write(directory, exc, what="the sheets directory")) from None
        except ConfigError as exc:
            raise ConfigError(f"{exc}; {_NOTHING_DONE}") from None
        stamp = when.strftime("%Y%m%d-%H%M%S")
        # Never overwrite a sheet: two runs in one second get -2, -3 … after the time stamp. The
        # CSV is created exclusively (O_EXCL, never through a link), so a name taken meanwhile by
        # another run, or planted, moves this run on to the next number.
        for n in range(1, 1000):
            base = f"passwords-{stamp}" if n == 1 else f"passwords-{stamp}-{n}"
            sheets = cls(directory / f"{base}.csv", directory / f"{base}.html", when)
            if os.path.lexists(sheets.html_path):
                continue
            try:
                fd = create_private(sheets.csv_path)
            except FileExistsError:
                continue
            except OSError as exc:
                raise SheetError(_cannot_write(sheets.csv_path, exc)) from None
            try:
                with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
                    handle.write(_csv_text(handouts))
                    handle.flush()
                    os.fsync(handle.fileno())
                _sync_directory(directory)
            except OSError as exc:
                sheets.csv_path.unlink(missing_ok=True)
                raise SheetError(_cannot_write(sheets.csv_path, exc)) from None
            return sheets
        raise SheetError(f"{directory} holds 999 sheets of {stamp}; move old sheets away")

    def complete(self, handouts: Sequence[Handout]) -> list[Path]:
        """The final sheets: the HTML file and the CSV (replacing the escrow in one step) with
        *handouts*, the accounts whose password was set or is unknown; with none, the escrow is
        removed and nothing is returned."""
        if not handouts:
            self.discard()
            return []
        try:
            write_private(self.html_path, _html_text(handouts, self.when))
            write_private(self.csv_path, _csv_text(handouts))
        except (OSError, ProvisionerError) as exc:
            raise SheetError(
                f"the passwords were set, but their sheet could not be completed ({exc}); they "
                f"are all in {self.csv_path}, marked pending: hand them out from there"
            ) from None
        return [self.html_path, self.csv_path]

    def discard(self) -> None:
        """Remove the escrow: none of its passwords was set."""
        self.csv_path.unlink(missing_ok=True)


def write_sheets(handouts: Iterable[Handout], directory: Path, when: dt.datetime) -> list[Path]:
    """The sheets of passwords that are already known (no escrow step): the HTML file and the CSV,
    or nothing when there are no hand-outs."""
    people = list(handouts)
    if not people:
        return []
    return HandoutSheets.begin(people, directory, when).complete(people)


_NOTHING_DONE = "no password was set and nothing was changed in the directory"


def _cannot_write(path: Path, exc: OSError, what: str = "the password sheet") -> str:
    reason = exc.strerror or str(exc)
    return (
        f"cannot write {what} {path} ({reason}); {_NOTHING_DONE}: make room or fix the sheets "
        "directory and run again"
    )


def _sync_directory(directory: Path) -> None:
    """Make the new file's name durable too (POSIX); Windows cannot open a directory."""
    if os.name == "nt":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sorted_groups(handouts: Iterable[Handout]) -> list[tuple[str, list[Handout]]]:
    by_group: dict[str, list[Handout]] = {}
    for handout in handouts:
        by_group.setdefault(handout.group, []).append(handout)
    return [
        (group, sorted(people, key=lambda p: p.name.casefold()))
        for group, people in sorted(by_group.items())
    ]


def _csv_text(handouts: Iterable[Handout]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["group", "name", "username", "status", "password"])
    for group, people in _sorted_groups(handouts):
        for p in people:
            password = "" if p.status == "unknown" else p.password
            cells = [group, p.name, p.username, _STATUS_TEXT[p.status], password]
            writer.writerow([csv_cell(cell) for cell in cells])
    return buffer.getvalue()


def _html_text(handouts: Iterable[Handout], when: dt.datetime) -> str:
    def cell(text: str) -> str:
        return html.escape(visible(text))

    pages = []
    for group, people in _sorted_groups(handouts):
        rows = "".join(
            f"<tr><td>{cell(p.name)}</td><td><code>{cell(p.username)}</code></td>"
            f"<td>{_html_password(p)}</td></tr>"
            for p in people
        )
        pages.append(
            f'<section class="page"><h1>{cell(group)}</h1>'
            f"<p>New accounts, {when:%d-%m-%Y}. Hand each person their own line.</p>"
            f"<table><tr><th>Name</th><th>Username</th><th>Password</th></tr>{rows}</table>"
            "</section>"
        )
    return (
        '<!doctype html><html lang="nl"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>Initial passwords</title><style>"
        "body{font-family:sans-serif}table{border-collapse:collapse;width:100%}"
        "td,th{border:1px solid #999;padding:.4em;text-align:left}code{font-size:1.2em}"
        ".page{page-break-after:always}</style></head><body>" + "".join(pages) + "</body></html>"
    )


def _html_password(handout: Handout) -> str:
    if handout.status == "unknown":
        return html.escape(UNKNOWN)
    code = f"<code>{html.escape(visible(handout.password))}</code>"
    return code if handout.status == "set" else f"{code} ({html.escape(PENDING)})"
