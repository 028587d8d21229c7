"""AtomicPusher: TFX's Pusher whose pushes to a serving folder are atomic and recorded once.

  component.py  the component: TFX's Pusher (same spec and outputs) with the executor below
  executor.py   writes a version through a hidden partial folder and a rename, and reuses a
                version that a push wrote but never recorded
"""
