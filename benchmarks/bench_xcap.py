"""CPU cost of the XCAP manager's document work as the contact list grows.

For contact lists of N contacts (each in a group, in the presence RLS service and in
the OMA granted-contacts list), the CPU time (time.process_time, best of REPEATS) of:
one add_contact operation applied to the documents and the changed documents built
(what one user action costs an update), and extracting every object for
XCAPManagerDidReloadData. Peer, measured in the same run: lxml parsing and
serializing the same resource-lists document, the floor of any whole-document
approach; the ratio says how many such passes our work costs.

    PYTHONPATH=src python benchmarks/bench_xcap.py
"""

import time

from lxml import etree

from sipsimple.xcap.documents import Operation, StoredDocument, Workspace, choose_applications
from sipsimple.xcap.model import Contact, PresencePolicy

ACCOUNT = "sip:alice@example.com"
AUIDS = ["resource-lists", "rls-services", "org.openmobilealliance.pres-rules"]
SIZES = (100, 500, 1000)
REPEATS = 5


def contact(index: int) -> Contact:
    result = Contact(f"Contact {index}", f"sip:user{index}@example.com", f"group {index % 10}")
    result.presence_policies = [PresencePolicy("wp_prs_grantedcontacts", "allow")]
    return result


def documents(size: int) -> tuple[dict, dict, dict[str, StoredDocument]]:
    applications = choose_applications(AUIDS)
    urls = {
        key: f"http://xcap.example.com/{a.auid}/users/{ACCOUNT}/index"
        for key, a in applications.items()
    }
    stored = {key: StoredDocument() for key in applications}
    workspace = Workspace(ACCOUNT, applications, stored, urls)
    workspace.apply(Operation("normalize"))
    for index in range(size):
        workspace.apply(Operation("add_contact", {"contact": contact(index)}))
    built = {key: StoredDocument(content, "e") for key, content in workspace.changes().items()}
    return applications, urls, built


def best(function) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.process_time()
        function()
        times.append(time.process_time() - start)
    return min(times)


def measure(size: int) -> tuple[float, float, float]:
    """CPU seconds of one add_contact update, of an extract, of the lxml pass."""
    applications, urls, stored = documents(size)
    new = contact(size + 1)
    content = stored["resource_lists"].content

    def one_operation() -> None:
        workspace = Workspace(ACCOUNT, applications, stored, urls)
        workspace.apply(Operation("add_contact", {"contact": new}))
        workspace.changes()

    def extract() -> None:
        Workspace(ACCOUNT, applications, stored, urls).extract()

    def lxml_pass() -> None:
        etree.tostring(etree.fromstring(content))

    return best(one_operation), best(extract), best(lxml_pass)


def main() -> None:
    print("contacts  add_contact   extract  lxml parse+write  ratio add/lxml")
    for size in SIZES:
        add_time, extract_time, peer = measure(size)
        print(
            f"{size:>8} {add_time * 1e3:>10.2f}ms {extract_time * 1e3:>8.2f}ms"
            f" {peer * 1e3:>15.3f}ms {add_time / peer:>12.1f}x"
        )


if __name__ == "__main__":
    main()
