import java.util.*;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.common.Uuid;

/**
 * Java AdminClient KIP-853 round: addRaftVoter or removeRaftVoter of one node, then
 * describeMetadataQuorum. Prints "voters=[..] observers=[..]" (node ids, sorted); an error
 * from the broker ends the program with its exception.
 * Usage: QuorumVoters <bootstrap> add|remove <node id>
 */
public class QuorumVoters {
    public static void main(String[] a) throws Exception {
        Properties p = new Properties();
        p.put("bootstrap.servers", a[0]);
        p.put("default.api.timeout.ms", "60000");
        int id = Integer.parseInt(a[2]);
        try (Admin admin = Admin.create(p)) {
            // Rill voters have no directory ids or controller listeners: both are ignored.
            if (a[1].equals("add")) {
                admin.addRaftVoter(id, Uuid.ZERO_UUID, Set.of(new RaftVoterEndpoint("CONTROLLER", "127.0.0.1", 9093)))
                    .all().get(90, TimeUnit.SECONDS);
            } else {
                admin.removeRaftVoter(id, Uuid.ZERO_UUID).all().get(90, TimeUnit.SECONDS);
            }
            QuorumInfo q = admin.describeMetadataQuorum().quorumInfo().get(30, TimeUnit.SECONDS);
            System.out.println("voters=" + q.voters().stream().map(QuorumInfo.ReplicaState::replicaId).sorted().toList()
                + " observers=" + q.observers().stream().map(QuorumInfo.ReplicaState::replicaId).sorted().toList());
        }
    }
}
