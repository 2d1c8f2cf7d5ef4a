"""Local simulators of the Ploomes (CRM) and Omie (ERP) APIs, with an admin API and fault knobs."""
