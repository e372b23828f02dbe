"""The backplane between nodes: one meeting's participants on several nodes meet through links
(control with a proof of the cluster secret, audio in SRTP), each node serving its own."""
