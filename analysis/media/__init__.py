"""Episodes as pictures: frames (rendered or rebuilt), overlays and GIF / MP4 video, the episode player's data and
live play. Imports analysis.core, analysis.interp and analysis.behaviour."""
