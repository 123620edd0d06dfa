"""Pure codecs for radio modems: RNode over KISS, Ebyte E22 transparent UART, REYAX AT."""
