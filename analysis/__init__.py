"""Pure computation behind every page (never imports streamlit), plus figures.py for plotly figures."""
