// Package cluster joins hydrogen brokers into one protoactor-go cluster and
// carries their broadcasts from node to node.
//
// # Membership
//
// Membership is protoactor-go's: cluster.Cluster, its member list and
// ClusterTopology events, fed by a ClusterProvider. This package adds no
// membership protocol; its default provider (Config.Provider nil) is
// health checking over protoactor's remote itself. Every node runs a
// member actor under a well-known name, and every ProbeInterval sends
// each configured peer its view of it: its member id, the peer's member
// id as it knows it and what it makes of it (blocked, a member, sent
// broadcasts), its own group. One message each way is both heartbeat and
// answer; a change (a new member id, different flags) is answered at
// once; a view echoes the number of the last view it heard from the
// receiver, and a node drops any view older than one it took. The members
// handed to protoactor are this node and the peers heard from within
// DeadAfter. A peer not heard from lately is sent to only once it answers
// at the transport (its gRPC server's HTTP/2 settings, or a TLS
// handshake): a stopped process's kernel accepts connections that
// protoactor would otherwise wait on, then sleep after, holding up
// everything for the address. Membership thus needs no port, server or
// service of its own and travels on the same connections as the
// broadcasts. Any other protoactor provider (consul, etcd, Kubernetes)
// can be set instead; the views are exchanged all the same, with the
// members' addresses, for the node's State and for rejoining.
//
// # Incarnations and rejoining
//
// protoactor puts the member id of a member that left on a block list for
// good (by design: a member that left may never come back; a new
// instance joins with a new id). So a node that its peers dropped,
// because it was stopped or cut off longer than DeadAfter, is never
// admitted again under its id, and would stay cut off. A Node therefore
// runs its membership as an incarnation: an actor system, remote,
// protoactor cluster and member id of its own, apart from the broker's
// actor system. When a node hears a peer again and one of the two has
// blocked the other's id, the one that was itself stopped (it knows: its
// prober did not run, and it says so), else the one with the smaller
// mutual group (on a tie, the group with the higher lowest address),
// retires its incarnation and starts another on the same address with a
// new member id, which every peer admits. The broker, its clients, Publish and the
// counters carry on across incarnations; only broadcasts published while
// the node is cut off are lost, and counted. A node whose own prober did
// not run for a while (its process was stopped) gives its peers DeadAfter
// to be heard from again before it drops them, counts only views that
// have heard one of its own sent since (the views that waited for it may
// predate its peers' verdict), and, stopped for longer than DeadAfter,
// rejoins at once: every peer that ran meanwhile has dropped it.
//
// protoactor's remote, when it drops its connection to an address, has
// the next one to that address dropped too, and one dropped while being
// made opens another once made: under traffic a chain that took every
// message to the address with it. After a connection to an address is
// dropped the node sends nothing there for a moment (quietFor) and keeps
// protoactor from opening one; the chain dies out.
//
// # State
//
// Joining: not yet admitted by every peer heard from (just started, or
// rejoining), or not known (the node itself was stopped, and has not
// weighed its standing since). OK: every peer heard from has admitted the
// node and sends it its broadcasts, the node sends them its own, and with
// it they are more than half of the configured nodes; from then on every
// frame published on one of them reaches the node's streams, and every
// frame published here reaches theirs. Isolated: fewer than half of the
// configured nodes are with it. Start returns at once and the node joins
// in the background, so the broker serves its own clients meanwhile.
//
// # Batches
//
// The data path is protoactor-go's remote: every incarnation runs one
// receiver actor, named with its member id, and a node's broadcasts go
// straight to the receiver of every member that has admitted it, in
// batches. A receiver takes batches only from the receivers of its
// current members (by member id and address), refuses and counts the
// rest, and de-duplicates by (sending node, batch number) per sending
// address. Cluster PubSub was read and set aside: its topic is a virtual
// actor living on one node, so every batch takes two hops, the topic's
// node is a single point every broadcast waits on, and its subscriptions,
// kept in an empty store, are lost when the topic moves after a join or a
// leave.
//
// Publish appends the frame to the current batch under a short lock and
// returns; it never blocks and never waits for the network. A batch is
// sent when the sender goroutine gets to it, which under load is when the
// previous batches have been acknowledged, so batches grow with the load
// (up to 64 KiB of frames). On the wire a batch is one
// wrapperspb.BytesValue whose bytes are the protobuf encoding of
//
//	message Batch {
//	  uint64 node = 1;            // the sending node (its process)
//	  uint64 seq = 2;             // batch number, 1, 2, 3 ... per sending node
//	  uint64 first = 3;           // node-wide number of the first frame
//	  repeated Frame frames = 4;            // for every stream
//	  repeated GroupFrame group_frames = 5; // for a group's members
//	  uint64 skipped = 6;         // batches before it not sent to this receiver: nothing in them was for it
//	}
//	message Frame {
//	  uint64 publisher = 1;       // who published it (a stream, for the broker)
//	  bytes payload = 2;
//	}
//	message GroupFrame {
//	  uint64 publisher = 1;
//	  bytes payload = 2;
//	  bytes group = 3;            // the group's name, never empty
//	}
//
// written with protowire (fields may come in any order on the protobuf
// wire, so the header follows the frames and frames are encoded once, as
// they are published; frames and group frames stand in publish order and
// are delivered in that order). A group's frames are a field of their own
// so that a node that does not know them skips them: taken for frames,
// they would reach every stream. A group frame without a group, or a
// frame with one, cuts the batch short as malformed. The node and batch numbers outlive incarnations,
// so a receiver counts what a peer sent while it was cut off as gaps.
//
// # Groups: only where they have members
//
// A group frame goes only to the peers with members of its group. Every
// node keeps the set of groups with members on it (SetInterest, which the
// broker calls when a group gets its first member and loses its last) and
// a version counting its changes, and tells each peer that admitted it
// and whose views announce the capability (Probe field 12; a node of an
// earlier version is told nothing and gets every group frame), on that
// peer's receiver, in a message told apart from a Batch by its first
// field:
//
//	message Interest {
//	  uint32 kind = 16;           // 1 whole set, 2 changes, 3 ack, 4 ask for the whole set
//	  uint64 version = 17;        // the sender's version (whole, changes), or the one acknowledged (ack)
//	  uint64 base = 18;           // changes: the version they apply to
//	  repeated string add = 19;   // whole: every group; changes: groups that have members now
//	  repeated string remove = 20; // changes: groups that have none now
//	  bool all = 21;              // whole: every group (past 1 MiB or 65,536 names)
//	}
//
// The whole set first, then the changes on the version last sent; the
// peer acknowledges each version it takes, asks for the whole set when
// changes do not apply to what it has, and ignores a whole set older than
// the one it has (a late message of an older connection). A version
// unacknowledged for 250 ms is sent again, whole, and a peer gets a whole
// set at most that often however often it asks. Only a member's messages
// are taken; a member's message that cannot be taken (malformed, past the
// bounds) makes the receiver forget what the member told it, and a set
// past 1 MiB or 65,536 names is taken for every group. The sender of a
// batch leaves out, for each peer, the group frames of groups the peer
// said it has no members of, and does not send a batch with nothing left
// (the next one says how many it skipped, so the receiver counts no gap;
// when that next one is lost, the skipped count as gaps too). A peer that
// has not told its set, or whose message could not be taken, gets every
// group frame. The window is a group's first member here before the others
// have taken the change (a lost message adds up to 250 ms): frames they
// publish meanwhile miss it. WhenKnown closes it for those who can wait:
// it calls back once every peer that takes this node's batches has
// acknowledged the version that added the group (or after
// InterestTimeout).
//
// # Bounds and what is dropped
//
// Nothing is unbounded. Each peer has at most Window batches in flight
// (sent, not acknowledged) and behind them a backlog of at most
// MaxPending bytes. A batch moves into the backlogs as soon as one peer
// has room for it; a peer without room loses it: dropped for that peer
// only, counted per frame, logged at most once a second, and seen by the
// peer as a gap in the batch numbers. When no peer has room, batches wait
// on the publishing side, bounded by MaxPending bytes too; past that,
// Publish drops the frame, counts it and returns ErrFull. So a node that
// cannot keep up loses frames, and nobody else waits: not the other peers
// and not the publishing node's own streams. A batch unacknowledged for
// AckTimeout is taken as lost and frees its place in the window.
//
// # Order
//
// Frames are numbered in the order Publish appends them, under one lock,
// so the frames of one publisher (calls made one after another) are in
// order within the node's sequence. Batches to one peer leave from a
// single goroutine in sequence order, travel over the one remote
// connection protoactor keeps per address (FIFO), and are handled by one
// receiver actor (its mailbox is FIFO), which calls deliver for each frame
// in order, under a lock that also spans incarnations. Nothing is ever
// resent, and a receiver drops any batch whose number is not above the
// last it saw from that node, so there are no duplicates. A node does not
// send to itself.
//
// # TLS
//
// With Config.TLS, every connection between nodes, membership and
// broadcasts alike, is mutual TLS (1.3): a node presents its certificate
// whichever side dials, and accepts only a peer whose certificate chains
// to the cluster's CA; the node it dials must also be named by its
// certificate. A node without such a certificate cannot connect, so it
// can neither join, nor send, nor receive. Without TLS, a receiver still
// takes batches only from current members, but a member is recognised by
// its address and member id alone, which anyone on the network path can
// learn and claim; so TLS is for any network but loopback, and a node
// without it on another address says so at start.
//
// # Concurrency
//
// A Node is safe for concurrent use. Its goroutines (the sender, the
// prober, the one that runs incarnations, and a short-lived one per
// retired incarnation closing its connections) belong to it: Shutdown
// stops them and waits for them, ctx permitting. deliver is called from
// one goroutine at a time, never from Publish's caller.
package cluster
