"""Every email in the real-world corpus ends as a case or a quarantine with a reason.

The corpus (../shared/corpus, or MAILBRIDGE_CORPUS) holds ~190 emails from two MIME
libraries' test suites: bad boundaries, unknown charsets, broken base64, bounces, ...
No file may make the pipeline fail or raise.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from mailbridge.mail.parsing import parse
from mailbridge.pipeline.outcomes import AlreadyHandled, CaseOpened, CaseUpdated, Quarantined
from mailbridge.pipeline.processor import Processor
from mailbridge.store.models import Message, QuarantineItem
from tests.factories import add_person, make_services, seed_directory
from tests.helpers.corpus import corpus_dir, corpus_files


def test_every_corpus_file_parses_without_raising() -> None:
    for path in corpus_files():
        parsed = parse(path.read_bytes())
        assert parsed.dedupe_key and len(parsed.raw_sha256) == 64, path


def test_every_corpus_file_becomes_a_case_or_a_quarantine(tmp_path: Path, engine: Engine) -> None:
    files = corpus_files()
    seed_directory(engine)
    services = make_services(tmp_path, engine)
    # Make half the senders members, so the corpus exercises case creation (attachments,
    # odd charsets) as well as quarantine.
    senders = sorted({p.from_address for f in files if (p := parse(f.read_bytes())).from_address})
    known = {
        "cllr.jane.smith@example.gov.uk", "raj.patel@example.gov.uk", "tom.baker@example.gov.uk",
        "priya.shah@example.gov.uk", "member.support@example.gov.uk",
    }  # fmt: skip
    for i, address in enumerate(senders):
        if i % 2 == 0 and address not in known and len(address) <= 254:
            add_person(engine, "member", f"Member {i}", address)

    outcomes: dict[str, object] = {}
    processor = Processor(services)
    batch = [(f.read_bytes(), None) for f in files]
    for f, outcome in zip(files, processor.process_batch(batch), strict=True):
        outcomes[str(f.relative_to(corpus_dir()))] = outcome

    # A member's reply to their own enquiry earlier in the corpus joins that case (John Doe's
    # RFC 2822 example thread, when he is among the members): a case too.
    ends = CaseOpened | CaseUpdated | Quarantined | AlreadyHandled
    bad = {name: o for name, o in outcomes.items() if not isinstance(o, ends)}
    assert bad == {}
    for name, o in outcomes.items():
        if isinstance(o, Quarantined):
            assert o.reason and o.code, name
    kinds = {type(o).__name__ for o in outcomes.values()}
    assert {"CaseOpened", "Quarantined"} <= kinds
    cases = sum(isinstance(o, CaseOpened) for o in outcomes.values())
    assert cases >= 30, f"only {cases} corpus emails opened cases"

    # None vanishes: "already handled" only for a copy of an earlier file, saying the same
    # field by field (many of these files reuse one Message-ID for different emails).
    said: dict[str, list[tuple[object, ...]]] = {}
    duplicates = 0
    for f in files:
        p = parse(f.read_bytes())
        content = (p.from_address, p.to, p.cc, p.subject, p.body_text, p.body_html,
                   [(a.content_type, a.payload) for a in p.attachments])  # fmt: skip
        if isinstance(outcomes[str(f.relative_to(corpus_dir()))], AlreadyHandled):
            assert content in said.get(p.message_id or "", []), f
            duplicates += 1
        said.setdefault(p.message_id or "", []).append(content)
    with Session(engine) as session:
        stored = session.exec(select(func.count()).where(Message.direction == "in")).one()
        kept_aside = session.exec(
            select(func.count()).where(col(QuarantineItem.message_id).is_(None))
        ).one()
    assert stored + kept_aside + duplicates == len(files)
    counts = Counter(type(o).__name__ for o in outcomes.values())
    print(f"corpus: {len(files)} files, {dict(sorted(counts.items()))}")


def test_one_corpus_file_at_a_time_never_fails(tmp_path: Path, engine: Engine) -> None:
    """Without the batch: each file alone, as `quarantine retry` would run it."""
    services = make_services(tmp_path, engine)
    processor = Processor(services)
    for path in corpus_files():
        outcome = processor.process(path.read_bytes())
        assert isinstance(outcome, Quarantined | AlreadyHandled), (path, outcome)
