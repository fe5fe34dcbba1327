"""seqlens: `streamlit run app.py`. The entry point only routes: st.navigation lists the pages (ui/nav.py)
and runs the chosen one; Home is home.py, the analyses are in views/ (not pages/: Streamlit would list a pages/ folder in the sidebar itself on a direct link)."""
import streamlit as st

from ui.charts import page_style
from ui.nav import pages

st.set_page_config(page_title="seqlens", layout="wide")
page_style()   # metric values shrink and wrap instead of being cut (ui/charts.py)
st.navigation(pages(), position="sidebar").run()
