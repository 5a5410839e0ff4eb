"""Pipeline stages: plain functions from a RunContext (and settings) to a small result. No Airflow here."""
