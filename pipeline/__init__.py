"""`pile`: Pile data preparation — read, dedup, tokenize, order, inspect, verify.

Every stage is a pure function of (inputs, frozen config dataclass) -> files; see DESIGN in README.
"""

__version__ = "0.1.0"
