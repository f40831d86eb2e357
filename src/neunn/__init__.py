"""NeuNN: recognition of cytoplasmic abnormalities of neutrophils in single-cell blood smear images."""

__version__ = "0.1.0"

# The seven classes of the reference work (Barrera et al., Comput. Biol. Med. 2024), in its order.
NEUTROPHIL_CLASSES = ("NEU", "HYP", "CRY", "DB", "HJBLI", "GBI", "BAC")
