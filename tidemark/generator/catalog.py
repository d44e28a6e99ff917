"""What the simulated web looks like: tenants, countries (with a home-country boost per tenant),
devices, referrers and pages, and the distributions they are drawn from."""

from __future__ import annotations

import random
from bisect import bisect
from itertools import accumulate

from tidemark.generator.partitioner import kafka_partition

TENANT_NAMES = (
    "acme",
    "globex",
    "initech",
    "umbrella",
    "hooli",
    "stark",
    "wayne",
    "wonka",
    "tyrell",
    "cyberdyne",
    "soylent",
    "massive",
    "vandelay",
    "aperture",
    "oscorp",
    "gringotts",
    "dunder",
    "pied-piper",
    "monarch",
    "nakatomi",
)

# Rough share of web traffic; every code is in the schema's enum.
COUNTRY_WEIGHTS = (
    ("US", 28.0),
    ("IN", 9.0),
    ("DE", 6.5),
    ("GB", 6.0),
    ("FR", 4.5),
    ("BR", 4.0),
    ("JP", 4.0),
    ("CA", 3.5),
    ("ES", 2.5),
    ("IT", 2.5),
    ("NL", 2.0),
    ("AU", 2.0),
    ("MX", 2.0),
    ("PL", 1.5),
    ("SE", 1.2),
    ("KR", 1.2),
    ("ID", 1.2),
    ("TR", 1.0),
    ("CH", 1.0),
    ("BE", 0.9),
    ("AT", 0.8),
    ("IE", 0.8),
    ("NG", 0.8),
    ("ZA", 0.7),
    ("AR", 0.7),
    ("PH", 0.7),
    ("VN", 0.6),
    ("SG", 0.6),
    ("NO", 0.5),
    ("DK", 0.5),
    ("FI", 0.5),
    ("PT", 0.5),
    ("CZ", 0.4),
    ("RO", 0.4),
    ("EG", 0.4),
    ("CL", 0.4),
    ("CO", 0.4),
    ("IL", 0.4),
    ("NZ", 0.3),
    ("GR", 0.3),
    ("HU", 0.3),
    ("UA", 0.3),
    ("TH", 0.3),
    ("MY", 0.3),
    ("KE", 0.2),
    ("PK", 0.2),
    ("AE", 0.2),
    ("SA", 0.2),
    ("IS", 0.05),
    ("LU", 0.05),
    ("MT", 0.05),
    ("EE", 0.05),
    ("UY", 0.05),
    ("NP", 0.05),
)
HOME_COUNTRIES = ("US", "DE", "GB", "FR", "IN", "JP", "BR", "CA", "NL", "ES")
HOME_COUNTRY_BOOST = 6.0

DEVICE_CUM = ((0.50, "desktop"), (0.90, "mobile"), (0.98, "tablet"), (1.00, "other"))

REFERRERS = (
    "https://www.google.com/",
    "https://www.google.com/",
    "https://www.google.com/",
    "https://www.bing.com/",
    "https://duckduckgo.com/",
    "https://t.co/",
    "https://www.facebook.com/",
    "https://www.linkedin.com/",
    "https://news.ycombinator.com/",
    "https://www.reddit.com/",
    "https://l.instagram.com/",
    "https://mail.google.com/",
)

PAGE_SECTIONS = (
    ("/products/{n}", 40),
    ("/blog/{slug}-{n}", 20),
    ("/docs/{slug}/{n}", 12),
    ("/category/{slug}", 10),
    ("/search?q={slug}", 8),
    ("/help/{slug}", 6),
    ("/u/{n}/settings", 4),
)
PAGE_SLUGS = (
    "shoes",
    "pricing-guide",
    "getting-started",
    "release-notes",
    "summer-sale",
    "api",
    "billing",
    "security",
    "outdoor",
    "kitchen",
    "laptops",
    "garden",
    "travel",
    "faq",
)
FIXED_PAGES = ("/", "/pricing", "/about", "/cart", "/checkout", "/login", "/signup", "/contact")


def cdf(weights) -> list[float]:
    """Cumulative distribution ending at exactly 1.0, so ``bisect(cdf, random())`` is always in range."""
    cum = list(accumulate(weights))
    total = cum[-1]
    cdf = [c / total for c in cum]
    cdf[-1] = 1.0
    return cdf


def zipf_cdf(n: int, s: float) -> list[float]:
    return cdf(1.0 / (k**s) for k in range(1, n + 1))


# The variant nibble of a version-4 UUID keeps its two low bits and gets 0b10 on top.
UUID4_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def uuid4_from_bits(bits: int) -> str:
    """The text of ``uuid.UUID(int=bits, version=4)``, without building a UUID object."""
    h = "%032x" % bits  # noqa: UP031 - %-format is ~30 % faster than an f-string here (hot path)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{UUID4_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


class Tenant:
    """One simulated site: its users (and their partitions), sessions, pages and country mix."""

    __slots__ = (
        "name",
        "users",
        "user_keys",
        "partitions",
        "user_partitions",
        "sessions",
        "session_end",
        "pages",
        "page_cdf",
        "country_codes",
        "country_cdf",
        "site",
    )

    def __init__(self, name: str, n_users: int, rng: random.Random, partitions: int):
        self.name = name
        self.site = f"https://www.{name}.example/"
        self.users = [f"u-{rng.getrandbits(64):016x}" for _ in range(n_users)]
        self.user_keys = [u.encode() for u in self.users]
        self.partitions = partitions
        self.user_partitions = [-1] * n_users  # filled lazily: pure-Python murmur2 is slow
        self.sessions: list[str | None] = [None] * n_users
        self.session_end = [0] * n_users

        n_pages = rng.randint(200, 500)
        pages: list[str] = list(FIXED_PAGES)
        seen = set(pages)
        templates = [t for t, _ in PAGE_SECTIONS]
        section_cdf = cdf(w for _, w in PAGE_SECTIONS)
        while len(pages) < n_pages:
            tpl = templates[bisect(section_cdf, rng.random())]
            page = tpl.format(n=rng.randint(1, 9999), slug=rng.choice(PAGE_SLUGS))
            if page not in seen:
                seen.add(page)
                pages.append(page)
        home = pages[0]
        rest = pages[1:]
        rng.shuffle(rest)
        self.pages = [home] + rest  # "/" is the most visited page
        self.page_cdf = zipf_cdf(len(self.pages), 1.05)

        home_country = rng.choice(HOME_COUNTRIES)
        self.country_codes = [c for c, _ in COUNTRY_WEIGHTS]
        self.country_cdf = cdf(w * (HOME_COUNTRY_BOOST if c == home_country else 1.0) for c, w in COUNTRY_WEIGHTS)

    def partition(self, u: int) -> int:
        p = self.user_partitions[u]
        if p < 0:
            p = self.user_partitions[u] = kafka_partition(self.user_keys[u], self.partitions)
        return p
