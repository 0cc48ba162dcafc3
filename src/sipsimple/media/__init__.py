"""Media: RTP/RTCP, SRTP with SDES keys, ICE, codecs and the audio building blocks."""
