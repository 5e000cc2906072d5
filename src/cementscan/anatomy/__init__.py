"""Anatomy stage: CTVolume -> masks and landmarks (spine levels, lungs, venous route); issue #3."""
