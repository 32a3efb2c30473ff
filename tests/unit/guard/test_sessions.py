from dockyard.guard.sessions import SessionBook


def test_a_session_is_held_by_one_owner_until_released():
    book = SessionBook()
    assert book.claim("alice", "s1") is None
    assert book.owns("alice", "s1")
    assert not book.owns("bob", "s1")
    assert "already in use" in (book.claim("bob", "s1") or "")
    assert "already in use" in (book.claim("alice", "s1") or "")  # one connection per ID
    book.release("s1")
    assert not book.owns("alice", "s1")
    assert book.claim("bob", "s1") is None


def test_a_session_without_an_id_is_refused():
    assert "needs an ID" in (SessionBook().claim("alice", "") or "")
