"""Clinical stage: summary + clinical inputs -> management suggestion with sources; issue #5."""
