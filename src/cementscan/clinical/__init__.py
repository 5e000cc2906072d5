"""Clinical stage: summary + clinical inputs -> management suggestion with sources."""

from cementscan.clinical.management import KNOWN_SYMPTOMS, parse_symptoms, suggest_management

__all__ = ["KNOWN_SYMPTOMS", "parse_symptoms", "suggest_management"]
