"""Packaging for analysisstore.

``client/`` and ``schemas/`` live at the top level of the repository (they are
the contract other projects read first) and are mapped into the package as
``analysisstore.client`` and ``analysisstore.schemas``.
"""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(
    r'^__version__ = "([^"]+)"', (HERE / "analysisstore" / "_version.py").read_text(), re.M
).group(1)

INSTALL_REQUIRES = [
    "tornado>=6.3",
    "pymongo>=4.13",
    "jsonschema>=4.18",
    "fastjsonschema>=2.19",
    "requests>=2.31",
    "urllib3>=2.0",
    "ujson>=5.8",
    "doct>=1.1",
    "platformdirs>=3.0",
    # Progress bars for long pushes: the standard, well-kept choice.
    "tqdm>=4.60",
    "PyYAML>=6.0",
    "prometheus-client>=0.17",
    # The analyses shipped with the analysis driver; the thin client never imports it.
    "numpy>=1.24",
    # W3C PROV export of lineages: the reference implementation of the PROV model; lxml for PROV-XML
    # (what prov's "xml" extra asks for, named directly so the conda recipe can list the same packages).
    "prov>=2.0",
    "lxml>=4.9",
]
EXTRAS_REQUIRE = {
    "embedded": ["SecantusDB>=0.7.0b3"],
    # playwright drives the system Chromium in the browser test (no browser download).
    # pytest-xdist: the suite runs on two processes (each with its own embedded database) to stay near 10 min.
    "test": ["pytest>=8.0", "pytest-timeout>=2.2", "pytest-xdist>=3.5", "hypothesis>=6.100",
             "openapi-spec-validator>=0.7", "playwright>=1.40",
             # tests/test_fuzz.py: requests generated from the served OpenAPI document.
             "schemathesis>=4.0",
             # tests/test_typing.py: mypy and the stubs of the typed dependencies.
             "mypy>=1.10", "types-requests", "types-PyYAML", "types-ujson", "types-tqdm", "types-jsonschema"],
}

setup(
    name="analysisstore",
    version=VERSION,
    description="A provenance store for scientific data analysis: what each analysis read, ran and produced.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    python_requires=">=3.11",
    packages=[
        *find_packages(include=["analysisstore", "analysisstore.*"]),
        "analysisstore.client",
        "analysisstore.schemas",
    ],
    package_dir={
        "analysisstore": "analysisstore",
        "analysisstore.client": "client",
        "analysisstore.schemas": "schemas",
    },
    package_data={
        "analysisstore": ["py.typed"],
        "analysisstore.client": ["py.typed"],
        "analysisstore.schemas": ["*.json"],
        "analysisstore.web": ["*.html", "*.js", "*.css"],
    },
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": ["analysisstore = analysisstore.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3.11",
        "Framework :: Tornado",
        "Topic :: Scientific/Engineering",
    ],
)
