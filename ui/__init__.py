"""Streamlit glue shared by app.py and pages/: cached loading and the session's current selection."""
