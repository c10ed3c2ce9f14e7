"""An RFC 6455 conformance suite: Autobahn|Testsuite's client cases
("fuzzingserver" mode) played by a Trio server against the clients under
test, graded as Autobahn grades them. See docs/conformance.md."""
