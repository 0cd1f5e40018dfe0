"""Pipelined streaming: ``runner`` (StreamRunner, stream), ``sources`` (files, cameras, URLs),
``pool`` (pooled buffers, reorder), ``split`` (sessions x threads), ``tracker`` (ByteTracker),
``view`` (MJPEG preview). Named ``streaming`` so it does not shadow ``edgerun.runtime.stream``."""
