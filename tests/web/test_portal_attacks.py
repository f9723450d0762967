"""Issue #17's portal attacked (review17): a hostile councillor, delegate, officer, API
client or visitor, through the real app on both databases. Each test is named for the
attack it shows refused."""

from __future__ import annotations

from sqlmodel import Session, select

from mailbridge.cases import permissions
from mailbridge.store.db import transaction
from mailbridge.store.models import Case, Person
from tests.helpers.council import JANE, REF
from tests.web.conftest import Web


def _deactivate(web: Web, address: str) -> None:
    """The member leaves the council: the directory import marks them inactive."""
    with transaction(web.engine) as session:
        person = session.get(Person, web.council.person_id(address))
        assert person is not None
        person.active = False
        session.add(person)


def test_a_delegate_whose_member_was_deactivated_no_longer_reaches_their_cases(
    web: Web,
) -> None:
    """The email door stops a delegate acting for an inactive member (directory.identify);
    the portal must too: no list, no enquiry page, no files, no update request."""
    web.pothole()
    delegate, csrf = web.signed_in("delegate")
    assert delegate.get(f"/enquiries/{REF}").status_code == 200
    _deactivate(web, JANE)
    assert REF not in delegate.get("/enquiries").text
    assert delegate.get(f"/enquiries/{REF}").status_code == 404
    answer = delegate.post(f"/enquiries/{REF}/update", data={"csrf": csrf, "text": "any news?"})
    assert answer.status_code == 404
    assert delegate.get("/enquiries/new").status_code == 404
    with Session(web.engine) as session:
        tom = session.get(Person, web.people["delegate"])
        case = session.exec(select(Case).where(Case.reference == REF)).one()
        assert permissions.standings(session, tom, case) == frozenset()
        assert session.exec(select(Case.id).where(permissions.visible_clause(tom))).all() == []
