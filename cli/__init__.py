"""The command-line layer shared by every binary (experiments/, export/, bench/, android_app/tools/).

``flags_lib`` defines the flags several binaries share and turns them into the library's configs;
``runner`` runs a binary's main with its output flags checked and one error line for bad input.
The library (``dapter_tf``) never imports this package.
"""
