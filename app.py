"""seqlens: `streamlit run app.py`. The entry point only routes: st.navigation lists the pages (ui/nav.py)
and runs the chosen one; Home is home.py, the analyses are in views/ (not pages/: Streamlit would list a pages/ folder
in the sidebar itself on a direct link). The sidebar's links are ui/nav.py's, drawn with st.page_link so that they
carry the selection in the URL (Streamlit's own drop the query string); drawn again after the page ran, which may have
changed the selection (an upload, Home's selects)."""
import streamlit as st

from ui import nav
from ui.charts import page_style

st.set_page_config(page_title="seqlens", layout="wide")
page_style()   # metric values shrink and wrap instead of being cut (ui/charts.py)
page = st.navigation(nav.pages(), position="hidden")
nav.adopt()   # a direct link, a reload, back / forward: the URL's selection
with st.sidebar:
    slot = st.empty()
nav.links(slot)
page.run()
nav.write()
nav.links(slot)
